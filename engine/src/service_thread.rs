//! The thread of a broker-link service (shadows, jobs, provisioning): started with a stop flag,
//! stopped by setting it and waking the link, joined on shutdown or drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use mast_broker::link::LinkWaker;

/// A running service thread.
#[derive(Debug)]
pub(crate) struct ServiceThread {
    stop: Arc<AtomicBool>,
    waker: LinkWaker,
    thread: Option<JoinHandle<()>>,
}

impl ServiceThread {
    /// Runs `body` on a thread named `name`; `body` returns once the flag it is given is set
    /// (and it has answered what it took). `waker` wakes its link.
    pub(crate) fn spawn(
        name: &str,
        waker: LinkWaker,
        body: impl FnOnce(&AtomicBool) + Send + 'static,
    ) -> std::io::Result<ServiceThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&flag))?;
        Ok(ServiceThread {
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServiceThread {
    fn drop(&mut self) {
        self.stop();
    }
}
