//! The process's resident memory beyond what it holds: two habits of the allocator (mimalloc,
//! the daemon's global allocator in `main.rs`) that this module turns off or works around.
//!
//! - **Transparent huge pages.** mimalloc asks for them on its arenas, and the kernel then backs
//!   a 2 MiB range with one page as soon as any byte of it is used: an idle daemon was resident
//!   at 37 MiB with them and 27 MiB without, a month's working set (about 86,000 inquiries) at
//!   152–166 MiB and 133–149 MiB. [`disable_huge_pages`] turns them off for the process at
//!   start-up, as `MIMALLOC_ALLOW_THP=0` would; an operator who sets that variable decides
//!   instead.
//! - **Freed memory kept.** mimalloc hands freed pages back to the system after a delay, and
//!   only when an allocating thread gets round to it: after a restore, the temporaries of
//!   reading the snapshot and its events stayed resident in threads that then went idle.
//!   [`release_freed`] hands back what is free now; the daemon calls it once the state is
//!   restored and after each eviction from the working set. With both, that working set is
//!   resident at 130–140 MiB.

/// Transparent huge pages off for this process (Linux; elsewhere nothing to do), unless
/// `MIMALLOC_ALLOW_THP` says otherwise. Called first thing in `main`: what the allocator maps
/// before that (a few MiB) keeps its huge pages.
pub fn disable_huge_pages() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // Before logging is set up, and nothing to say if it fails (a kernel without the
        // setting): the memory is then what it was.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}

/// Hands the memory freed so far back to the system: the calling thread's free pages, and
/// every free page of the process waiting for its delay: under 10 ms after restoring a month's
/// working set (profiled).
pub fn release_freed() {
    // SAFETY: `mi_collect` takes no pointers and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
