"""bench.join_syscalls reads what perf and /proc wrote as they wrote it: the counts of each system call, the CPU
ticks of each thread, and a kernel stack charged to the call that entered the kernel (this kernel inlines
``__x64_sys_write`` into ``ksys_write``, so the libc wrapper above the entry is the name to read)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's bench/ (not an installed package)
from bench.join_syscalls import _kernel_bucket, read_counts, read_cpu  # noqa: E402

PERF_STAT = """# started on Mon Nov 30 06:49:55 2026

889,,syscalls:sys_enter_write,12457412,100.00,,
12,,syscalls:sys_enter_fdatasync,12457412,100.00,,
0,,syscalls:sys_enter_getpid,12457412,100.00,,
<not counted>,,syscalls:sys_enter_sendmmsg,0,100.00,,
1000,,raw_syscalls:sys_enter,12457412,100.00,,
40,,context-switches,12457412,100.00,,
7,,page-faults,12457412,100.00,,
"""


def test_counts_name_each_call_and_keep_the_rest_as_other(tmp_path: Path) -> None:
    path = tmp_path / "w.syscalls"
    path.write_text(PERF_STAT)
    assert read_counts(str(path)) == {"write": 889, "fdatasync": 12, "(context-switches)": 40, "(page-faults)": 7,
                                      "other": 99, "all": 1000}


def test_cpu_is_split_between_the_loops_thread_and_the_others(tmp_path: Path) -> None:
    # pid (comm) state ... utime stime: fields 14 and 15; a name may hold spaces and parentheses
    def line(tid: int, utime: int, stime: int) -> str:
        return f"{tid} (python (x) y) S 1 2 3 0 -1 4194560 10 0 0 0 {utime} {stime} 0 0 20 0 2 0 5 6 7"
    (tmp_path / "w.syscalls.pid").write_text("100\n")
    (tmp_path / "w.syscalls.before").write_text(line(100, 50, 10) + "\n")
    (tmp_path / "w.syscalls.after").write_text(line(100, 150, 30) + "\n" + line(101, 0, 20) + "\n")
    status = "/proc/100/task/{0}/status:{1}_ctxt_switches:\t{2}\n"
    (tmp_path / "w.syscalls.switches.before").write_text(status.format(100, "voluntary", 5)
                                                         + status.format(100, "nonvoluntary", 1))
    (tmp_path / "w.syscalls.switches.after").write_text(status.format(100, "voluntary", 25)
                                                        + status.format(100, "nonvoluntary", 2)
                                                        + status.format(101, "voluntary", 7)
                                                        + status.format(101, "nonvoluntary", 0))
    cpu = read_cpu(str(tmp_path / "w.syscalls"))
    assert cpu == {"(user s, loop)": 1.0, "(system s, loop)": 0.2, "(user s, threads)": 0.0,
                   "(system s, threads)": 0.2,  # the commit thread started inside the window: from zero
                   "(switches, voluntary, loop)": 20, "(switches, involuntary, loop)": 1,
                   "(switches, voluntary, threads)": 7, "(switches, involuntary, threads)": 0}


def test_a_kernel_sample_goes_to_the_call_that_entered_the_kernel() -> None:
    write = ["ffffffff81a tcp_sendmsg_locked+0x1 ([kernel.kallsyms])", "ffffffff81b ksys_write+0x2 ([kernel.kallsyms])",
             "ffffffff81c do_syscall_64+0x3 ([kernel.kallsyms])",
             "ffffffff81d entry_SYSCALL_64_after_hwframe+0x4 ([kernel.kallsyms])",
             "7f0 __GI___libc_write+0x5 (/usr/lib/x86_64-linux-gnu/libc.so.6)"]
    assert _kernel_bucket(write) == "write"
    unnamed = [*write[:4], "7f0 [unknown] ([unknown])"]
    assert _kernel_bucket(unnamed) == "write"  # from ksys_write
    fsync = ["ffffffff81a blkdev_issue_flush+0x1 ([kernel.kallsyms])",
             "ffffffff81b __x64_sys_fdatasync+0x2 ([kernel.kallsyms])",
             "ffffffff81d entry_SYSCALL_64_after_hwframe+0x4 ([kernel.kallsyms])", "7f0 [unknown] ([unknown])"]
    assert _kernel_bucket(fsync) == "fdatasync"
    assert _kernel_bucket(["ffffffff81a clear_page+0x1 ([kernel.kallsyms])",
                           "ffffffff81b asm_exc_page_fault+0x2 ([kernel.kallsyms])"]) == "(page faults)"
    assert _kernel_bucket(["ffffffff81a net_rx_action+0x1 ([kernel.kallsyms])",
                           "ffffffff81b handle_softirqs+0x2 ([kernel.kallsyms])"]) == "(interrupts, softirq)"
    assert _kernel_bucket(["7f0 sem_post@GLIBC_2.2.5+0x1 (libc.so.6)"]) == "(kernel, other)"
