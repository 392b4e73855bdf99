//! Shared-memory regions of the preloaded library (rate_limit's buckets, the buffer of
//! buffered counters): each is reserved at server start with one LWLock of its own, and
//! handed to its module once attached. One pair of hooks serves them all.

use pgrx::pg_sys;
use std::ffi::CStr;

/// A region: its name (of the segment and of its LWLock tranche), its size, and what to
/// do once it is attached (`fresh`: just created, at server start or after a crash's
/// reinitialisation of shared memory; to be initialised).
#[derive(Clone, Copy)]
pub struct Region {
    pub name: &'static CStr,
    pub size: fn() -> usize,
    pub attach: unsafe fn(base: *mut u8, fresh: bool, lock: *mut pg_sys::LWLock),
}

const MAX_REGIONS: usize = 4;

static mut REGIONS: [Option<Region>; MAX_REGIONS] = [None; MAX_REGIONS];
static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;

fn regions() -> impl Iterator<Item = Region> {
    // SAFETY: written only by `register`, in the postmaster, before any hook runs.
    let regions: [Option<Region>; MAX_REGIONS] = unsafe { REGIONS };
    regions.into_iter().flatten()
}

/// Reserve `region`; called from `_PG_init` while the postmaster preloads the library.
pub fn register(region: Region) {
    // SAFETY: _PG_init runs once, single-threaded, in the postmaster; the previous hooks
    // are chained.
    unsafe {
        if regions().next().is_none() {
            PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
            pg_sys::shmem_request_hook = Some(shmem_request);
            PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
            pg_sys::shmem_startup_hook = Some(shmem_startup);
        }
        let free = regions().count();
        assert!(free < MAX_REGIONS, "MAX_REGIONS");
        REGIONS[free] = Some(region);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            prev();
        }
        for r in regions() {
            pg_sys::RequestAddinShmemSpace((r.size)());
            pg_sys::RequestNamedLWLockTranche(r.name.as_ptr(), 1);
        }
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        // AddinShmemInitLock is the 22nd of the main LWLocks (lwlocknames.txt).
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        for r in regions() {
            let mut found = false;
            let base = pg_sys::ShmemInitStruct(r.name.as_ptr(), (r.size)(), &mut found) as *mut u8;
            let lock = &raw mut (*pg_sys::GetNamedLWLockTranche(r.name.as_ptr())).lock;
            (r.attach)(base, !found, lock);
        }
        pg_sys::LWLockRelease(init_lock);
    }
}

/// A random hash seed for a region's new life (so nobody can precompute keys that
/// collide or share a probe run).
pub fn random_seed(what: &str) -> u64 {
    let mut seed = [0u8; 8];
    // SAFETY: a valid buffer of its length.
    if !unsafe { pg_sys::pg_strong_random(seed.as_mut_ptr().cast(), seed.len()) } {
        pgrx::error!("{what}: could not draw a random hash seed");
    }
    u64::from_le_bytes(seed)
}
