//! One place that swaps the synchronisation primitives for loom's under `cfg(loom)`, so the
//! lock-free code is model-checked with exactly the same source that ships.

#[cfg(loom)]
pub(crate) use loom::{
    cell::UnsafeCell,
    hint::spin_loop,
    sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread::yield_now,
};

#[cfg(not(loom))]
pub(crate) use std::{
    hint::spin_loop,
    sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread::yield_now,
};

/// `std::cell::UnsafeCell` with loom's closure-based access API, so that the same code
/// compiles against both. Under loom every access is tracked and a racing access fails
/// the model.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Locks a mutex, ignoring poisoning: the data behind volley's mutexes stays consistent
/// even if a panic unwound through a critical section (each one is a single push or pop).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Stores `value` into `cell` (Release) when dropped: a consumer that shows an item to a
/// caller's closure hands its slot back to the producers even if the closure panics (the
/// item then leaks, rather than stall the ring on a slot that is never released).
pub(crate) struct StoreOnDrop<'a> {
    pub(crate) cell: &'a AtomicUsize,
    pub(crate) value: usize,
}

impl Drop for StoreOnDrop<'_> {
    fn drop(&mut self) {
        self.cell.store(self.value, Ordering::Release);
    }
}
