//! The async runtime that drives `object_store` from synchronous code.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// One runtime for the process, started on first use. Its few worker
/// threads run the HTTP connections; the calling thread polls the
/// request futures, so `block_on` is called from plain threads only (the
/// CLI's, Python's with the GIL released), never from inside the runtime.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .thread_name("safeweights-remote")
            .enable_all()
            .build()
            // Building fails only when the OS refuses threads or an epoll
            // instance: nothing can be read then, and there is no caller to
            // hand an error to from a static.
            .expect("cannot start the I/O runtime for remote files")
    })
}

/// Runs `future` to completion on the calling thread.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}
