//! A worker's lease on its receive queue: one `u64` of the `LEASES` map (an mmapable BPF
//! array), the CLOCK_MONOTONIC time until which the XDP programs hand that queue's fast-path
//! frames to the forwarder. The worker renews it by writing the map's memory (no syscall);
//! when it stops renewing — it exited, was killed, or stalls — the programs carry the queue
//! again within [`FORWARDER_LEASE_NS`], without waiting for the kernel to close its sockets
//! (which, after `kill -9`, took tens of milliseconds here, frames lost meanwhile).
//!
//! Owns the mapping. Dropping the lease ends it at once (the queue goes back to XDP), then
//! unmaps.
//!
//! Panic contract: nothing here panics.
#![allow(unsafe_code)]

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::MapData;
use ctpath_common::maps::{FORWARDER_LEASE_NS, XSK_QUEUES_PER_INTERFACE};

/// The lease of one queue, renewed by its worker.
pub struct Lease {
    base: NonNull<libc::c_void>,
    len: usize,
    queue: u32,
    /// Keeps the map's descriptor for as long as its memory is mapped.
    _map: MapData,
}

// SAFETY: the mapping is shared memory written with atomic stores only; the pointer is valid
// for the life of the value wherever it moves.
unsafe impl Send for Lease {}

impl Lease {
    /// Maps `map` (the `LEASES` array) for the worker of `queue`.
    pub fn new(map: MapData, queue: u32) -> io::Result<Lease> {
        if queue >= XSK_QUEUES_PER_INTERFACE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("queue {queue} has no lease slot"),
            ));
        }
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let bytes = XSK_QUEUES_PER_INTERFACE as usize * std::mem::size_of::<u64>();
        let len = bytes.div_ceil(page) * page;
        // SAFETY: a fresh shared mapping of the map's descriptor (an mmapable array of
        // `XSK_QUEUES_PER_INTERFACE` u64s); the kernel checks the length and flags.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(base).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Lease {
            base,
            len,
            queue,
            _map: map,
        })
    }

    fn slot(&self) -> &AtomicU64 {
        // SAFETY: `queue` < XSK_QUEUES_PER_INTERFACE (checked in `new`), so the slot lies in the
        // mapping, 8-byte aligned (page-aligned base); the kernel's array value layout is a
        // plain u64, and every access from userspace is atomic.
        unsafe { &*(self.base.as_ptr() as *const AtomicU64).add(self.queue as usize) }
    }

    /// Holds the queue until [`FORWARDER_LEASE_NS`] after `now_ns`.
    pub fn renew(&self, now_ns: u64) {
        self.slot()
            .store(now_ns + FORWARDER_LEASE_NS, Ordering::Release);
    }

    /// Gives the queue back to the XDP programs now.
    pub fn end(&self) {
        self.slot().store(0, Ordering::Release);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.end();
        // SAFETY: `base`/`len` are the mapping made in `new`, unmapped once, here.
        unsafe { libc::munmap(self.base.as_ptr(), self.len) };
    }
}
