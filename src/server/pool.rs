//! The table model's CPU workers (`--cpu-workers N`): a few threads that hash checksums
//! while the loop goes on serving datagrams, as libuv's thread pool and nginx's thread pools
//! serve their single-threaded event loops.
//!
//! The loop hands each [`Job`] the table asks for to the workers through a bounded queue
//! and brings every result back into the table ([`SessionTable::completed`]); the table
//! itself caps the jobs out at [`Pool::capacity`], so the queue never fills and a proven
//! checksum beyond it is answered Busy. Results come back over a channel that the loop
//! looks at every time it wakes; while a job is out it wakes at least every
//! [`RESULT_POLL`], so a result waits at most that long (a hash takes far longer), and an
//! idle server does not wake at all.

use crate::library::Library;
use crate::proto::checksum::Checksum;
use crate::proto::endpoint::Key;
use crate::proto::refusal::Refusal;
use crate::proto::store::Store;
use crate::proto::table::{Job, SessionTable, QUEUE_FULL};
use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The longest a finished hash waits for the loop to notice it.
pub(crate) const RESULT_POLL: Duration = Duration::from_millis(1);

type Done = (Key, Result<Checksum, Refusal>);

/// Worker threads that hash checksums, and the two channels to them.
pub(crate) struct Pool {
    jobs: SyncSender<Job>,
    results: Receiver<Done>,
    workers: usize,
}

impl Pool {
    /// Starts `workers` threads hashing with their own clones of `library`. The threads end
    /// when the pool is dropped, once the hash each is doing (if any) is done.
    ///
    /// # Errors
    /// If a thread cannot be started.
    pub(crate) fn start(workers: usize, library: &Library) -> io::Result<Self> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(Self::capacity_of(workers));
        let (report, results) = mpsc::channel::<Done>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..workers {
            let (queue, report, mut library) =
                (Arc::clone(&queue), report.clone(), library.clone());
            std::thread::Builder::new()
                .name(format!("udpft-cpu-{i}"))
                .spawn(move || loop {
                    let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(job) = job else { return };
                    let sum = library.checksum(&job.name, &job.file, job.algo);
                    if report.send((job.key, sum)).is_err() {
                        return;
                    }
                })?;
        }
        Ok(Self {
            jobs,
            results,
            workers,
        })
    }

    /// Jobs out at most: one being hashed by each worker and one waiting for each.
    pub(crate) fn capacity(&self) -> usize {
        Self::capacity_of(self.workers)
    }

    fn capacity_of(workers: usize) -> usize {
        2 * workers.max(1)
    }

    /// Hands the table's new jobs to the workers and brings their results back.
    pub(crate) fn exchange(&self, table: &mut SessionTable, now: Instant) {
        while let Some(job) = table.poll_job() {
            let key = job.key;
            match self.jobs.try_send(job) {
                Ok(()) => {}
                // The table keeps within the capacity, so this is a worker gone: never wait.
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    table.completed(now, key, Err(Refusal::busy(QUEUE_FULL)));
                }
            }
        }
        while let Ok((key, result)) = self.results.try_recv() {
            table.completed(now, key, result);
        }
    }
}
