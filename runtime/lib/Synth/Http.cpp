//===- Http.cpp - a minimal HTTP/1.1 POST client over POSIX sockets -------===//
//
// Plain http:// only: one request per connection (Connection: close), the
// response read as Content-Length, chunked, or up to the server's close.
// Non-blocking connect and poll() bound every step by one deadline.
//
//===----------------------------------------------------------------------===//
#include "mm/Synth.h"

#include "mm/Error.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace mm {
namespace synth {

namespace {

constexpr size_t kMaxResponse = 64u << 20; // 64 MiB

std::string lower(std::string s) {
  for (char &c : s)
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
  return s;
}

std::string trim(const std::string &s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

using Clock = std::chrono::steady_clock;

/// Milliseconds left before DEADLINE (at least 0).
int msLeft(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms < 0 ? 0 : (int)std::min<long long>(ms, 1 << 30);
}

class Socket {
public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket &) = delete;
  Socket &operator=(const Socket &) = delete;
  int fd() const { return fd_; }

private:
  int fd_;
};

/// Waits for EVENTS on FD; false on timeout.
bool waitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, msLeft(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

/// Connects to HOST:PORT; throws with PREFIX.
int connectTo(const Url &u, Clock::time_point deadline, double timeout, const std::string &prefix) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo *res = nullptr;
  std::string port = std::to_string(u.port);
  int rc = ::getaddrinfo(u.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) throw Error(prefix + "cannot resolve host '" + u.host + "': " + ::gai_strerror(rc));
  std::string lastError = "no address";
  int fd = -1;
  for (addrinfo *ai = res; ai; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      lastError = std::strerror(errno);
      continue;
    }
    int err = 0;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        if (!waitFor(fd, POLLOUT, deadline)) {
          ::close(fd);
          ::freeaddrinfo(res);
          throw Error(prefix + "timed out connecting to " + u.host + ":" + port + " after " + seconds(timeout) + " s");
        }
        socklen_t len = sizeof err;
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      }
    }
    if (err == 0) break;
    lastError = err == ECONNREFUSED ? "connection refused (is the server running and listening on this port?)"
                                    : std::strerror(err);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  if (fd < 0) throw Error(prefix + "cannot connect to " + u.host + ":" + port + ": " + lastError);
  return fd;
}

/// Parses a chunked body starting at BODY; returns false while incomplete.
/// Throws on a malformed chunk.
bool dechunk(const std::string &raw, size_t start, std::string &out, const std::string &prefix) {
  out.clear();
  size_t pos = start;
  for (;;) {
    size_t eol = raw.find("\r\n", pos);
    if (eol == std::string::npos) return false;
    std::string line = raw.substr(pos, eol - pos);
    size_t semi = line.find(';');
    if (semi != std::string::npos) line = line.substr(0, semi);
    line = trim(line);
    if (line.empty() || line.size() > 15 || line.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
      throw Error(prefix + "malformed chunk size '" + line + "' in a chunked response");
    size_t size = std::stoul(line, nullptr, 16);
    pos = eol + 2;
    if (size == 0) {
      // Trailers, then an empty line.
      for (;;) {
        size_t e = raw.find("\r\n", pos);
        if (e == std::string::npos) return false;
        if (e == pos) return true;
        pos = e + 2;
      }
    }
    if (raw.size() < pos + size + 2) return false;
    if (raw.compare(pos + size, 2, "\r\n") != 0) throw Error(prefix + "malformed chunked response (a chunk is not followed by CRLF)");
    out.append(raw, pos, size);
    pos += size + 2;
  }
}

} // namespace

Url parseHttpUrl(const std::string &url) {
  std::string lowerUrl = lower(url);
  if (lowerUrl.rfind("https://", 0) == 0)
    throw Error(url + ": https:// is not supported (mmdata's HTTP client has no TLS); run a local proxy that "
                      "forwards plain http:// to the API (for example on http://127.0.0.1:8080) and pass its http:// URL");
  if (lowerUrl.rfind("http://", 0) != 0)
    throw Error(url + ": not an http:// URL (expected http://HOST[:PORT][/PATH])");
  std::string rest = url.substr(7);
  size_t slash = rest.find_first_of("/?#");
  std::string authority = rest.substr(0, slash);
  Url u;
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  size_t hash = u.target.find('#');
  if (hash != std::string::npos) u.target = u.target.substr(0, hash);
  if (u.target.empty() || u.target[0] != '/') u.target = "/" + u.target;
  if (authority.find('@') != std::string::npos)
    throw Error(url + ": user names in URLs are not supported (use --api-key-env)");
  std::string port;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) throw Error(url + ": malformed IPv6 address");
    u.host = authority.substr(1, close - 1);
    std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') throw Error(url + ": malformed host");
      port = after.substr(1);
    }
  } else {
    size_t colon = authority.find(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) port = authority.substr(colon + 1);
  }
  if (u.host.empty()) throw Error(url + ": no host");
  if (!port.empty()) {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) throw Error(url + ": invalid port '" + port + "'");
    u.port = std::stoi(port);
    if (u.port < 1 || u.port > 65535) throw Error(url + ": invalid port '" + port + "'");
  }
  return u;
}

HttpResponse httpPost(const std::string &url, const std::string &body,
                      const std::vector<std::pair<std::string, std::string>> &headers, double timeoutSeconds) {
  const std::string prefix = "POST " + url + ": ";
  Url u = parseHttpUrl(url);
  if (!(timeoutSeconds > 0)) throw Error(prefix + "the timeout must be positive");
  const Clock::time_point deadline =
      Clock::now() + std::chrono::milliseconds((long long)(std::min(timeoutSeconds, 1e6) * 1000));

  std::string hostHeader = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
  if (u.port != 80) hostHeader += ":" + std::to_string(u.port);
  std::string req = "POST " + u.target + " HTTP/1.1\r\nHost: " + hostHeader +
                    "\r\nConnection: close\r\nUser-Agent: mmdata\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  bool haveType = false, haveAccept = false;
  for (const auto &h : headers) {
    if (h.first.find_first_of("\r\n:") != std::string::npos || h.second.find_first_of("\r\n") != std::string::npos)
      throw Error(prefix + "invalid header '" + h.first + "'");
    haveType |= lower(h.first) == "content-type";
    haveAccept |= lower(h.first) == "accept";
    req += h.first + ": " + h.second + "\r\n";
  }
  if (!haveType) req += "Content-Type: application/json\r\n";
  if (!haveAccept) req += "Accept: application/json\r\n";
  req += "\r\n";
  req += body;

  Socket sock(connectTo(u, deadline, timeoutSeconds, prefix));
  const std::string timedOut = prefix + "timed out after " + seconds(timeoutSeconds) + " s";
  size_t sent = 0;
  while (sent < req.size()) {
    if (!waitFor(sock.fd(), POLLOUT, deadline)) throw Error(timedOut + " sending the request");
    ssize_t n = ::send(sock.fd(), req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      throw Error(prefix + "sending the request failed: " + std::strerror(errno));
    }
    sent += (size_t)n;
  }

  HttpResponse resp;
  std::string raw;
  size_t headerEnd = std::string::npos;
  bool chunked = false, haveLength = false;
  size_t length = 0;
  char buf[16384];
  for (;;) {
    // Is the response complete?
    if (headerEnd == std::string::npos) {
      size_t e = raw.find("\r\n\r\n");
      if (e != std::string::npos) {
        std::string head = raw.substr(0, e);
        size_t lineEnd = head.find("\r\n");
        std::string status = head.substr(0, lineEnd);
        if (status.rfind("HTTP/1.", 0) != 0 || status.size() < 12 || status[8] != ' ')
          throw Error(prefix + "malformed response status line '" + status.substr(0, 80) + "'");
        std::string code = status.substr(9, 3);
        if (code.find_first_not_of("0123456789") != std::string::npos)
          throw Error(prefix + "malformed response status line '" + status.substr(0, 80) + "'");
        int statusCode = std::stoi(code);
        if (statusCode >= 100 && statusCode < 200) { // 100 Continue and friends: skip
          raw.erase(0, e + 4);
          continue;
        }
        resp.status = statusCode;
        resp.reason = trim(status.size() > 12 ? status.substr(13) : "");
        size_t pos = lineEnd == std::string::npos ? head.size() : lineEnd + 2;
        while (pos < head.size()) {
          size_t next = head.find("\r\n", pos);
          if (next == std::string::npos) next = head.size();
          std::string line = head.substr(pos, next - pos);
          size_t colon = line.find(':');
          if (colon != std::string::npos) resp.headers[lower(trim(line.substr(0, colon)))] = trim(line.substr(colon + 1));
          pos = next + 2;
        }
        headerEnd = e + 4;
        auto te = resp.headers.find("transfer-encoding");
        chunked = te != resp.headers.end() && lower(te->second).find("chunked") != std::string::npos;
        auto cl = resp.headers.find("content-length");
        if (!chunked && cl != resp.headers.end()) {
          if (cl->second.empty() || cl->second.size() > 15 || cl->second.find_first_not_of("0123456789") != std::string::npos)
            throw Error(prefix + "malformed Content-Length '" + cl->second + "'");
          length = std::stoull(cl->second);
          if (length > kMaxResponse) throw Error(prefix + "the response is too large (" + cl->second + " bytes)");
          haveLength = true;
        }
        if (resp.status == 204 || resp.status == 304) {
          haveLength = true;
          length = 0;
        }
      }
    }
    if (headerEnd != std::string::npos) {
      if (chunked) {
        if (dechunk(raw, headerEnd, resp.body, prefix)) return resp;
      } else if (haveLength && raw.size() - headerEnd >= length) {
        resp.body = raw.substr(headerEnd, length);
        return resp;
      }
    }
    if (raw.size() > kMaxResponse) throw Error(prefix + "the response is larger than 64 MiB");
    if (!waitFor(sock.fd(), POLLIN, deadline)) throw Error(timedOut + " waiting for the response");
    ssize_t n = ::recv(sock.fd(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      throw Error(prefix + "reading the response failed: " + std::strerror(errno));
    }
    if (n == 0) { // the server closed the connection
      if (headerEnd == std::string::npos) {
        if (raw.empty()) throw Error(prefix + "the server closed the connection without a response");
        throw Error(prefix + "the server closed the connection in the middle of the response headers");
      }
      if (chunked) throw Error(prefix + "the server closed the connection before the end of the chunked response");
      if (haveLength)
        throw Error(prefix + "the server closed the connection after " + std::to_string(raw.size() - headerEnd) + " of " +
                    std::to_string(length) + " body bytes");
      resp.body = raw.substr(headerEnd);
      return resp;
    }
    raw.append(buf, (size_t)n);
  }
}

} // namespace synth
} // namespace mm
