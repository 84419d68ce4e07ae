//! A persistent pool of worker threads for the fast path's layer splits (feature `threads`).
//!
//! A forward pass splits each large layer's rows over threads, tens of times per pass; starting
//! a thread per part per layer costs tens of microseconds each time, which made two threads
//! slower than one on a single image. The pool's workers live as long as the network that owns
//! them: between jobs each one spins for a while on its slot (so the next layer, a few
//! microseconds later, wakes it with one atomic store and no system call) and only then parks.
//! The caller runs the first job itself and waits for the others.
//!
//! A worker that has not started its job by the time the caller has finished its own (one
//! that was asleep, on a machine where waking a core takes longer than the job) loses it: the
//! caller takes the job back and runs it, so a split layer never waits for a slow wake-up and
//! two threads are never much slower than one. A pool runs one caller's jobs at a time; a
//! second caller that finds it busy runs its jobs one after the other on its own thread.
//! Either way each job computes the same values, so results do not depend on who ran what.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::vec::Vec;

/// A job: a closure run once, borrowed for the length of [`Pool::run`].
pub(crate) type Job<'a> = &'a mut (dyn FnMut() + Send);

/// Spins of an idle worker on its slot before it parks (about 50–200 µs on current CPUs:
/// longer than the gap between two layers, shorter than a user's pause).
const SPINS_BEFORE_PARK: u32 = 1 << 16;

/// Slot states: the caller moves IDLE → ASSIGNED, and either the worker claims the job
/// (ASSIGNED → RUNNING → DONE or PANICKED) or the caller takes it back (ASSIGNED → TAKEN) and
/// runs it itself; the caller returns the slot to IDLE.
const IDLE: u32 = 0;
const ASSIGNED: u32 = 1;
const RUNNING: u32 = 2;
const DONE: u32 = 3;
const PANICKED: u32 = 4;
const TAKEN: u32 = 5;
const EXIT: u32 = 6;

/// One worker's mailbox.
struct Slot {
    state: AtomicU32,
    /// The job, written by the caller before `state` becomes [`ASSIGNED`] and read by the
    /// worker after it sees that (release/acquire on `state`).
    job: UnsafeCell<Option<*mut (dyn FnMut() + Send)>>,
}

// SAFETY: `job` is written only by the caller while the slot is IDLE/DONE (the worker does not
// touch it then) and read only by the worker while it is ASSIGNED; `state`'s release stores and
// acquire loads order the two. The pointed-to closure is `Send`.
unsafe impl Sync for Slot {}
// SAFETY: as above; the raw pointer is only dereferenced under that protocol.
unsafe impl Send for Slot {}

struct Worker {
    slot: Arc<Slot>,
    handle: Option<JoinHandle<()>>,
}

/// Worker threads owned by one network (see the module documentation).
pub(crate) struct Pool {
    workers: Vec<Worker>,
    /// Held by the caller whose jobs the workers run.
    busy: Mutex<()>,
    /// Set when a worker's job panicked, so the caller panics too.
    poisoned: AtomicBool,
}

impl Pool {
    /// A pool that runs up to `threads` jobs at once: the caller and `threads − 1` workers.
    pub(crate) fn new(threads: usize) -> Self {
        let workers = (1..threads.max(1))
            .map(|k| {
                let slot = Arc::new(Slot {
                    state: AtomicU32::new(IDLE),
                    job: UnsafeCell::new(None),
                });
                let mine = Arc::clone(&slot);
                let handle = thread::Builder::new()
                    .name(std::format!("ddpm-core worker {k}"))
                    .spawn(move || work(&mine))
                    .expect("cannot start a worker thread");
                Worker {
                    slot,
                    handle: Some(handle),
                }
            })
            .collect();
        Self {
            workers,
            busy: Mutex::new(()),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Jobs this pool runs at once (the caller's thread included).
    pub(crate) fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs every job once and returns when all are done: job 0 on this thread, the others on
    /// the workers (at most [`Self::threads`] jobs). If another caller holds the pool, or
    /// there are more jobs than threads, the jobs without a worker run here, in order.
    pub(crate) fn run(&self, jobs: &mut [Job<'_>]) {
        let guard = self.busy.try_lock();
        let helpers = match &guard {
            Ok(_) => self.workers.len().min(jobs.len().saturating_sub(1)),
            Err(_) => 0,
        };
        let (mine, theirs) = jobs.split_at_mut(jobs.len() - helpers);
        for (w, job) in self.workers.iter().zip(theirs.iter_mut()) {
            let ptr: *mut (dyn FnMut() + Send + '_) = &mut **job;
            // SAFETY: the lifetime is erased only for as long as this call: every assigned
            // slot is waited for below (DONE or PANICKED) before `run` returns, so the worker
            // never touches the closure after its borrow ends. The slot is IDLE (no worker
            // reads `job`), see `Slot`.
            unsafe {
                *w.slot.job.get() = Some(core::mem::transmute::<
                    *mut (dyn FnMut() + Send + '_),
                    *mut (dyn FnMut() + Send + 'static),
                >(ptr));
            }
            w.slot.state.store(ASSIGNED, Ordering::Release);
            if let Some(h) = &w.handle {
                h.thread().unpark();
            }
        }
        for job in mine.iter_mut() {
            job();
        }
        let mut panicked = false;
        for (w, job) in self.workers.iter().zip(theirs.iter_mut()) {
            // A worker that has not started yet loses its job to this thread.
            if w.slot
                .state
                .compare_exchange(ASSIGNED, TAKEN, Ordering::Acquire, Ordering::Acquire)
                .is_ok()
            {
                // SAFETY: the worker never claimed the job (the exchange above won), so it
                // will not read it; clear the slot before it is reused.
                unsafe { *w.slot.job.get() = None };
                job();
                w.slot.state.store(IDLE, Ordering::Release);
                continue;
            }
            let mut spins = 0u32;
            loop {
                match w.slot.state.load(Ordering::Acquire) {
                    DONE => break,
                    PANICKED => {
                        panicked = true;
                        break;
                    }
                    _ => {}
                }
                spins = spins.wrapping_add(1);
                if spins < 1 << 12 {
                    core::hint::spin_loop();
                } else {
                    thread::yield_now();
                }
            }
            // SAFETY: the worker is done with the job (DONE/PANICKED seen with acquire).
            unsafe { *w.slot.job.get() = None };
            w.slot.state.store(IDLE, Ordering::Release);
        }
        drop(guard);
        if panicked || self.poisoned.load(Ordering::Relaxed) {
            self.poisoned.store(true, Ordering::Relaxed);
            panic!("a ddpm-core worker thread's job panicked");
        }
    }
}

/// A worker: waits for its slot to be assigned (spinning, then parked), runs the job, reports.
fn work(slot: &Slot) {
    loop {
        let mut spins = 0u32;
        loop {
            match slot.state.load(Ordering::Acquire) {
                EXIT => return,
                ASSIGNED => {
                    // Claim the job, unless the caller took it back in the meantime.
                    if slot
                        .state
                        .compare_exchange(ASSIGNED, RUNNING, Ordering::Acquire, Ordering::Acquire)
                        .is_ok()
                    {
                        break;
                    }
                }
                _ if spins < SPINS_BEFORE_PARK => {
                    spins += 1;
                    core::hint::spin_loop();
                }
                _ => thread::park(),
            }
        }
        // SAFETY: this worker claimed the job (ASSIGNED → RUNNING): the caller wrote a live
        // closure before its release store of ASSIGNED and waits for DONE/PANICKED before the
        // borrow ends (see `Pool::run`).
        let job = unsafe { (*slot.job.get()).expect("an assigned slot holds a job") };
        // SAFETY: as above; no one else uses the closure while the slot is RUNNING.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*job)() }));
        let done = if outcome.is_ok() { DONE } else { PANICKED };
        slot.state.store(done, Ordering::Release);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for w in &self.workers {
            w.slot.state.store(EXIT, Ordering::Release);
            if let Some(h) = &w.handle {
                h.thread().unpark();
            }
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}

impl Clone for Pool {
    /// A pool of its own with as many threads (workers are not shared between networks).
    fn clone(&self) -> Self {
        Self::new(self.threads())
    }
}

impl core::fmt::Debug for Pool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Pool({} threads)", self.threads())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn every_job_runs_once_whoever_runs_it() {
        for threads in 1..=4 {
            let pool = Pool::new(threads);
            for jobs_n in 1..=6 {
                let hits: Vec<AtomicUsize> = (0..jobs_n).map(|_| AtomicUsize::new(0)).collect();
                for _ in 0..50 {
                    let mut bodies: Vec<_> = hits
                        .iter()
                        .map(|h| {
                            move || {
                                h.fetch_add(1, Ordering::Relaxed);
                            }
                        })
                        .collect();
                    let mut jobs: Vec<Job<'_>> = bodies.iter_mut().map(|b| b as Job<'_>).collect();
                    pool.run(&mut jobs);
                }
                for h in &hits {
                    assert_eq!(
                        h.load(Ordering::Relaxed),
                        50,
                        "{threads} threads, {jobs_n} jobs"
                    );
                }
            }
        }
    }

    #[test]
    fn jobs_write_their_own_parts_of_a_borrowed_buffer() {
        let pool = Pool::new(3);
        let mut out = [0u32; 9];
        for round in 1..=100u32 {
            let mut bodies: Vec<_> = out
                .chunks_mut(3)
                .enumerate()
                .map(|(k, p)| move || p.iter_mut().for_each(|v| *v = round * 10 + k as u32))
                .collect();
            let mut jobs: Vec<Job<'_>> = bodies.iter_mut().map(|b| b as Job<'_>).collect();
            pool.run(&mut jobs);
            for (k, p) in out.chunks(3).enumerate() {
                assert!(p.iter().all(|&v| v == round * 10 + k as u32));
            }
        }
    }

    #[test]
    fn a_busy_pool_runs_a_second_callers_jobs_on_its_thread() {
        let pool = Pool::new(2);
        let _held = pool.busy.lock().unwrap();
        let ran = AtomicUsize::new(0);
        let mut a = || {
            ran.fetch_add(1, Ordering::Relaxed);
        };
        let mut b = || {
            ran.fetch_add(1, Ordering::Relaxed);
        };
        pool.run(&mut [&mut a, &mut b]);
        assert_eq!(ran.load(Ordering::Relaxed), 2);
    }
}
