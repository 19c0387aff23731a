"""Confinement of program children: network namespace, seccomp filter, resource limits, state canary."""

from __future__ import annotations

import ctypes
import dis
import errno
import gc
import importlib
import operator
import os
import resource
import sys
import warnings
from collections.abc import Callable
from types import CodeType
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2


def prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def enter_network_namespace() -> str | None:
    """Move this process into a new, empty network namespace; return why not when that is refused."""
    for flags in (CLONE_NEWNET, CLONE_NEWUSER | CLONE_NEWNET):  # the second works unprivileged on many hosts
        if _libc.unshare(flags) == 0:
            return None
    return f"no network namespace ({os.strerror(ctypes.get_errno())}); seccomp still refuses sockets"


# Denied with EPERM: networking, new processes and programs, signals to others, tracing, escaping limits,
# namespaces, and every way to create, modify or remove a file. Names unknown on this architecture are skipped.
_DENY = """
socket socketpair connect bind listen accept accept4 fork vfork clone execve execveat kill tkill tgkill
ptrace process_vm_readv process_vm_writev pidfd_open pidfd_send_signal pidfd_getfd kcmp setsid setpgid
setrlimit prlimit64 unshare setns mount umount2 pivot_root chroot chdir fchdir personality
creat unlink unlinkat rename renameat renameat2 mkdir mkdirat rmdir link linkat symlink symlinkat mknod mknodat
chmod fchmod fchmodat chown fchown lchown fchownat truncate ftruncate fallocate utime utimes utimensat futimesat
setxattr lsetxattr fsetxattr removexattr lremovexattr fremovexattr memfd_create mq_open msgget semget shmget
bpf perf_event_open userfaultfd io_uring_setup keyctl add_key request_key name_to_handle_at open_by_handle_at
fanotify_init setuid setgid setreuid setregid setresuid setresgid setgroups setfsuid setfsgid capset
reboot swapon swapoff init_module finit_module delete_module kexec_load acct quotactl syslog
sethostname setdomainname settimeofday clock_settime adjtimex clock_adjtime
""".split()
_NOSYS = ("clone3", "openat2")  # arguments behind pointers: make libc fall back to clone/openat
_WRITE_FLAGS = (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC)


def compile_seccomp() -> bytes:
    """Build the filter once (in the fork-server) and return its BPF program for `load_seccomp`."""
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    rules: list[tuple[int, str, tuple[Any, ...]]] = [(sc.ERRNO(errno.EPERM), name, ()) for name in _DENY]
    rules += [(sc.ERRNO(errno.ENOSYS), name, ()) for name in _NOSYS]
    for name, arg in (("open", 1), ("openat", 2)):
        rules += [(sc.ERRNO(errno.EPERM), name, (sc.Arg(arg, sc.MASKED_EQ, flag, flag),)) for flag in _WRITE_FLAGS]
    for action, name, args in rules:
        try:
            f.add_rule(action, name, *args)
        except (OSError, ValueError, RuntimeError):  # no such syscall here (e.g. `open` on arm64)
            pass
    r, w = os.pipe()
    with os.fdopen(w, "wb") as out:
        f.export_bpf(out)
    with os.fdopen(r, "rb") as src:
        return src.read()


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_seccomp(bpf: bytes) -> None:
    """Install a BPF program from `compile_seccomp` on this process (irreversible)."""
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.addressof(buf))
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if _libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp")


def limit_resources(memory_mb: int, cpu_s: int) -> None:
    """Limits of a program child: address space = current size + budget, no files, no core, CPU backstop."""
    size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    limits = {
        resource.RLIMIT_AS: size + (memory_mb << 20),
        resource.RLIMIT_FSIZE: 0,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_NOFILE: 64,
    }
    limits[resource.RLIMIT_CPU] = cpu_s
    for which, value in limits.items():
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))


# Modules whose attributes a program could replace to change the results of later programs in the same child.
CANARY_MODULES = (
    "builtins", "sys", "os", "os.path", "gc", "warnings", "signal", "math", "random", "re", "heapq", "copy",
    "collections", "itertools", "functools", "operator", "numpy", "numpy.random", "numpy.linalg", "numpy.fft",
    "scipy", "scipy.ndimage", "soar.execution.runner", "soar.execution.canonical", "soar.execution.wire",
)  # fmt: skip


class Canary:
    """Keeps the shared interpreter state of a program child as it was at construction, or says it cannot.

    Built once in the fork-server before it forks: building it touches (increments the reference counts of)
    thousands of objects, which would cost a child hundreds of copy-on-write page faults.

    `check(deep)` runs after every program. Settings that programs and libraries change (recursion limit, int
    digits, gc, tracing, numpy error handling, warning filters: scipy.sparse adds one on import) are compared
    (a few microseconds) and, when changed, put back with functions bound at construction, so the child goes on
    with what it imported. `deep=True` also checks the identity of every attribute that existed at construction
    in the modules above and in the Python classes they hold, and that sys.modules still maps the same names to
    the same modules: 0.2-1 ms, so it runs only after a program that `suspect` flags. New attributes elsewhere
    (a lazily imported submodule) are fine. `check` returns True when the child must retire: something
    changed that cannot be put back.
    """

    def __init__(self) -> None:
        spaces: list[Any] = [sys.modules]
        for name in CANARY_MODULES:
            module = sys.modules.get(name) or importlib.import_module(name)
            spaces.append(vars(module))
            spaces += [vars(v) for v in vars(module).values() if isinstance(v, type) and _mutable(v)]
        self._getters = [(operator.itemgetter(*ns), ns) for ns in spaces if len(ns) > 1]
        np = sys.modules["numpy"]
        seterr, enable, disable = np.seterr, gc.enable, gc.disable
        # (read, put back, comparable form) of each setting: functions bound now, before any program could replace them
        self._knobs: list[tuple[Callable[[], Any], Callable[[Any], Any], Callable[[Any], Any]]] = [
            (sys.getrecursionlimit, sys.setrecursionlimit, _same),
            (sys.get_int_max_str_digits, sys.set_int_max_str_digits, _same),
            (sys.gettrace, sys.settrace, id),
            (sys.getprofile, sys.setprofile, id),
            (gc.isenabled, lambda on: enable() if on else disable(), _same),
            (np.geterr, lambda modes: seterr(**modes), lambda modes: tuple(modes.items())),
            (np.geterrcall, np.seterrcall, id),
        ]
        self._saved = [read() for read, _, _ in self._knobs]
        self._builtins, self._warnings = vars(sys.modules["builtins"]), vars(warnings)
        self._filters: list[Any] = warnings.filters  # type: ignore[assignment]  # typeshed: Sequence; it is a list
        self._saved_filters = list(self._filters)
        self._filters_mutated = getattr(warnings, "_filters_mutated", lambda: None)  # clears cached lookups
        self._settings = self._current_settings()
        self._ids = self._current_ids()

    def _current_ids(self) -> list[int]:
        ids: list[int] = []
        for get, ns in self._getters:
            ids += map(id, get(ns))
        return ids

    def _current_settings(self) -> tuple[Any, ...]:
        filters = self._warnings["filters"]
        return len(self._builtins), id(filters), *map(id, filters), *(form(read()) for read, _, form in self._knobs)

    def _restore(self) -> None:
        for (_, put, _), value in zip(self._knobs, self._saved, strict=True):
            put(value)
        self._warnings["filters"] = self._filters
        self._filters[:] = self._saved_filters
        self._filters_mutated()

    def check(self, deep: bool) -> bool:
        """Put changed settings back; return whether the child must retire (`deep`: also check identities)."""
        try:
            if self._current_settings() != self._settings:
                self._restore()
                if self._current_settings() != self._settings:
                    return True
            return deep and self._current_ids() != self._ids
        except BaseException:  # an attribute was deleted, a function replaced...: retire anyway
            return True


def _same(value: Any) -> Any:
    return value


def _mutable(cls: type) -> bool:
    return not cls.__flags__ & (1 << 8)  # Py_TPFLAGS_IMMUTABLETYPE: C types cannot be patched


_MUTATING_OPS = frozenset({dis.opmap["STORE_ATTR"], dis.opmap["DELETE_ATTR"]})
_RISKY_NAMES = frozenset(
    """
setattr delattr getattr attrgetter vars globals locals eval exec compile __import__ importlib builtins
__builtins__ __dict__ __globals__ __setattr__ __delattr__ __getattribute__ __subclasses__ __closure__
sys modules gc ctypes environ seterr seterrcall setrecursionlimit filterwarnings simplefilter resetwarnings
signal settrace setprofile set_int_max_str_digits setswitchinterval _getframe f_globals f_back get_referents
get_referrers set_printoptions setlocale
""".split()
)
_HARMLESS_DUNDERS = frozenset("__name__ __module__ __qualname__ __init__ __class__ __doc__".split())


def suspect(code: CodeType) -> bool:
    """Whether a compiled program could change shared state: it assigns or deletes an attribute, or names a
    function or attribute that reaches module state (or any private `_name`). Such programs get a deep canary."""
    stack = [code]
    while stack:
        co = stack.pop()
        if not _MUTATING_OPS.isdisjoint(co.co_code[::2]):
            return True
        for name in co.co_names:
            if name in _RISKY_NAMES or name[0] == "_" and name not in _HARMLESS_DUNDERS:
                return True
        stack += [c for c in co.co_consts if type(c) is CodeType]
    return False
