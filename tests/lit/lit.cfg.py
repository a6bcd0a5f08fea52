import os
import lit.formats
from lit.llvm import llvm_config

config.name = "MM"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.mm_obj_root, "tests", "lit")
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]
llvm_config.with_system_environment(["HOME", "TMP", "TEMP"])
llvm_config.use_default_substitutions()  # FileCheck, not, count

config.substitutions.append(("%models", os.path.join(config.mm_src_root, "models")))
config.substitutions.append(("%inputs", os.path.join(config.test_source_root, "Inputs")))
tool_dirs = [os.path.join(config.mm_obj_root, "bin"), config.llvm_tools_dir]
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.add_tool_substitutions(["mmc", "mmc-opt", "mmrun", "mmdata"], tool_dirs)
import sys
config.substitutions.append(("%python", sys.executable))
# The PyTorch reference and the scripts built on it run on Debian's python3-torch.
config.substitutions.append(("%torchpython", "/usr/bin/python3"))
config.substitutions.append(("%scripts", os.path.join(config.mm_src_root, "scripts")))
