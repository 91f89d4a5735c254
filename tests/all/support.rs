//! Helpers that need the `ward` library itself. They live with the tests,
//! not in `ward-testkit`, so that `ward-bench` does not link the daemon.

use std::time::Duration;

use ward::store::{Keys, Queue};
use ward_testkit::Redis;

/// Runs `f` on a fresh Tokio runtime with a library handle on queue `q` of
/// `redis`, for tests that call the Redis layer directly.
pub fn with_queue<T>(redis: &Redis, f: impl AsyncFnOnce(Queue) -> T) -> T {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let con = ward::store::connect(&redis.url(), Duration::from_secs(1))
            .await
            .unwrap();
        f(Queue::new(Keys::new("q"), con)).await
    })
}
