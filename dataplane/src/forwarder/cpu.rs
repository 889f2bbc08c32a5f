//! The two things a forwarder worker asks of the operating system besides sockets: to run on
//! one core, and the clock the datapath stamps connections with.
//!
//! Panic contract: nothing here panics.
#![allow(unsafe_code)]

use std::io;

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    pin_thread(0, cpu)
}

/// Pins thread `tid` (0: the calling thread) to `cpu`.
pub fn pin_thread(tid: libc::pid_t, cpu: usize) -> io::Result<()> {
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is beyond what a cpu_set_t holds"),
        ));
    }
    // SAFETY: cpu_set_t is a plain bit array for which all zeros is valid; CPU_SET writes one
    // bit inside it (cpu was checked against the set's size); sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`, so the forwarder's and the
/// XDP programs' conntrack timestamps compare.
pub fn monotonic_ns() -> u64 {
    // SAFETY: `timespec` is plain data for which all zeros is valid.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `now` is a valid, writable `timespec`; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
