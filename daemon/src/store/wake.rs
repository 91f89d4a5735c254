//! Wake-ups: the pub/sub channel `ward:{Q}:wake` on which every new due time
//! of a delayed job is published, so the promoter need not poll.

use futures_util::StreamExt as _;

use super::{Keys, QueueError};

/// A subscription to one queue's wake-ups, on a connection of its own.
pub struct Wake {
    pubsub: redis::aio::PubSub,
}

impl Wake {
    /// Subscribes to the wake-ups of the queue with `keys` at `url`.
    ///
    /// # Errors
    /// Redis refused the connection or the subscription.
    pub async fn subscribe(url: &str, keys: &Keys) -> Result<Wake, QueueError> {
        Ok(Wake {
            pubsub: subscribed(url, &keys.wake).await?,
        })
    }

    /// Waits for the next wake-up; false once the connection is gone (then
    /// subscribe again).
    pub async fn next(&mut self) -> bool {
        self.pubsub.on_message().next().await.is_some()
    }
}

/// A pub/sub connection of its own to the Redis at the address `url`,
/// subscribed to `channel`: on a cluster, to the first seed node that
/// answers (see [`super::connect::pubsub_clients`]).
pub(super) async fn subscribed(url: &str, channel: &str) -> Result<redis::aio::PubSub, QueueError> {
    let mut last = None;
    for client in super::connect::pubsub_clients(url).await? {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                pubsub.subscribe(channel).await?;
                return Ok(pubsub);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(
        || QueueError::Protocol {
            what: "SUBSCRIBE",
            detail: "no node to subscribe on".to_string(),
        },
        QueueError::from,
    ))
}
