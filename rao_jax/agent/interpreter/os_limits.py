"""Operating-system limits a node process applies to itself before it runs any cell.

Layers, each applied where the host allows it (`Hardening.apply` reports what took effect):
* resource limits: address space (memory), CPU seconds, no core files, file size 0, few file
  descriptors;
* privileges: supplementary groups dropped and uid/gid set to `nobody` when running as root (so
  RLIMIT_NPROC and file permissions apply and the limits cannot be raised again);
* `PR_SET_NO_NEW_PRIVS`, then a seccomp filter (through libseccomp, if installed) that makes
  networking, process creation, exec, ptrace, signalling other processes, changing limits or
  identity, and every file write, creation, deletion or rename fail with EPERM.
"""
from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal

NOBODY = 65534
_LIBSECCOMP = "libseccomp.so.2"
_PR_SET_NO_NEW_PRIVS = 38
_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_CMP_MASKED_EQ = 7
_O_ACCMODE, _O_WRONLY, _O_RDWR, _O_CREAT, _O_TRUNC, _O_APPEND = 0o3, 0o1, 0o2, 0o100, 0o1000, 0o2000

DENIED_SYSCALLS = (
    # network
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "sendto", "sendmsg",
    "sendmmsg", "recvfrom", "recvmsg", "recvmmsg",
    # processes, threads, exec, other processes
    "fork", "vfork", "clone", "clone3", "execve", "execveat", "ptrace", "process_vm_readv",
    "process_vm_writev", "kill", "pidfd_open", "pidfd_send_signal", "pidfd_getfd", "unshare",
    "setns",
    # limits, identity, system
    "setrlimit", "prlimit64", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
    "setgroups", "setfsuid", "setfsgid", "capset", "chroot", "pivot_root", "mount", "umount2",
    "reboot", "swapon", "swapoff", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "personality", "acct", "settimeofday", "clock_settime", "sethostname", "setdomainname",
    "quotactl", "ioperm", "iopl", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "fanotify_init", "open_by_handle_at", "name_to_handle_at",
    # file system writes
    "creat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir",
    "link", "linkat", "symlink", "symlinkat", "mknod", "mknodat", "chmod", "fchmod", "fchmodat",
    "chown", "fchown", "fchownat", "lchown", "truncate", "ftruncate", "utime", "utimes",
    "utimensat", "futimesat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
    "fremovexattr",
)


class _ArgumentComparison(ctypes.Structure):
  _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
              ("datum_b", ctypes.c_uint64)]


def _errno_action(code: int) -> int:
  return 0x00050000 | (code & 0xFFFF)


class _SeccompFilter:
  """A denial filter built with libseccomp once (`build`); `load()` installs it on the caller.

  The fork server builds it and every node process it forks loads its own copy, so a node start
  costs one `seccomp_load`, not a hundred rule insertions.
  """

  def __init__(self):
    self._lib = None
    self._context = None
    self.status = f"unavailable ({_LIBSECCOMP} not found)"
    try:
      self._lib = ctypes.CDLL(_LIBSECCOMP)
    except OSError:
      return
    lib = self._lib
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgumentComparison)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    self._build()

  def _add(self, context: int, name: str, action: int,
           comparisons: tuple[tuple[int, int, int], ...] = ()) -> None:
    number = self._lib.seccomp_syscall_resolve_name(name.encode())
    if number < 0:
      return  # Not a syscall on this architecture.
    array = (_ArgumentComparison * max(1, len(comparisons)))(
        *[_ArgumentComparison(arg, _SCMP_CMP_MASKED_EQ, mask, value)
          for arg, mask, value in comparisons])
    if self._lib.seccomp_rule_add_array(context, action, number, len(comparisons), array) != 0:
      raise OSError(f"seccomp rule for {name} rejected")

  def _build(self) -> None:
    context = self._lib.seccomp_init(_SCMP_ACT_ALLOW)
    if not context:
      self.status = "failed (seccomp_init)"
      return
    deny = _errno_action(errno.EPERM)
    try:
      for name in DENIED_SYSCALLS:
        self._add(context, name, deny)
      # openat2 keeps its flags in a struct the filter cannot read; glibc falls back to openat.
      self._add(context, "openat2", _errno_action(errno.ENOSYS))
      for name, flags_arg in (("open", 1), ("openat", 2)):
        for mask, value in ((_O_ACCMODE, _O_WRONLY), (_O_ACCMODE, _O_RDWR), (_O_CREAT, _O_CREAT),
                            (_O_TRUNC, _O_TRUNC), (_O_APPEND, _O_APPEND)):
          self._add(context, name, deny, ((flags_arg, mask, value),))
    except OSError as error:
      self._lib.seccomp_release(context)
      self.status = f"failed ({error})"
      return
    self._context = context

  def load(self) -> str:
    if self._context is None:
      return self.status
    if self._lib.seccomp_load(self._context) != 0:
      return "failed (seccomp_load)"
    return f"on ({len(DENIED_SYSCALLS)} syscalls and file writes denied)"


def _set_limit(kind: int, value: int) -> None:
  resource.setrlimit(kind, (value, value))


class Hardening:
  """Every OS layer, prepared once (libraries loaded, filter built) and applied per process.

  Args:
    memory_limit_mb: address-space limit (RLIMIT_AS) of each hardened process.
    cpu_limit_s: CPU seconds (RLIMIT_CPU) a hardened process may use in its whole life; the kernel
      kills it past that (None: no limit).
  """

  def __init__(self, memory_limit_mb: int, cpu_limit_s: int | None = None):
    self._memory_limit_mb = memory_limit_mb
    self._cpu_limit_s = cpu_limit_s
    self._seccomp = _SeccompFilter()  # Loads the library while files can still be opened freely.
    self._libc = ctypes.CDLL(None, use_errno=True)

  def apply(self) -> dict[str, str]:
    """Applies every available layer to the calling process; returns what took effect."""
    report: dict[str, str] = {}
    try:
      _set_limit(resource.RLIMIT_AS, self._memory_limit_mb << 20)
      if self._cpu_limit_s is not None:
        _set_limit(resource.RLIMIT_CPU, self._cpu_limit_s)
      _set_limit(resource.RLIMIT_CORE, 0)
      _set_limit(resource.RLIMIT_FSIZE, 0)
      signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
      _set_limit(resource.RLIMIT_NOFILE, 64)
      _set_limit(resource.RLIMIT_NPROC, 0)
      cpu = f", {self._cpu_limit_s} CPU s" if self._cpu_limit_s is not None else ""
      report["rlimits"] = (f"on (address space {self._memory_limit_mb} MiB{cpu}, no files, "
                           "no processes)")
    except (OSError, ValueError) as error:
      report["rlimits"] = f"failed ({error})"
    if os.geteuid() == 0:
      try:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        report["privileges"] = "dropped to nobody"
      except OSError as error:
        report["privileges"] = f"failed ({error}); still root"
    else:
      report["privileges"] = f"unprivileged uid {os.geteuid()}"
    if self._libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
      report["no_new_privs"] = "on"
    else:
      report["no_new_privs"] = f"failed (errno {ctypes.get_errno()})"
    report["seccomp"] = self._seccomp.load()
    return report


def harden(memory_limit_mb: int, cpu_limit_s: int | None = None) -> dict[str, str]:
  """Applies every available layer to the calling process; returns what took effect."""
  return Hardening(memory_limit_mb, cpu_limit_s).apply()
