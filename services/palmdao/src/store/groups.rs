//! Writes applied in groups (ADR 0032): a task takes every request waiting
//! when its previous group is done (up to a bound) and applies them as one
//! group, so under load a bulk command's cost (a round trip, parsing, the
//! write concern's wait) is paid once per group, not once per request; at
//! rest a request is a group of one and waits for no timer. The bulk
//! commands such groups send are in `database`. A leaf: it knows nothing
//! of MongoDB or of the store.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

/// Most requests one group takes.
const MAX_GROUP: usize = 128;
/// Requests waiting for a group, beyond which `submit` waits for room.
const QUEUE: usize = 1024;

type Pending<T, R> = (T, oneshot::Sender<R>);

/// The handle requests are submitted through; clones share one task, which
/// ends when the last handle is dropped.
#[derive(Debug)]
pub struct Groups<T, R> {
    sender: mpsc::Sender<Pending<T, R>>,
}

impl<T, R> Clone for Groups<T, R> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Groups<T, R> {
    /// Starts the task (needs a Tokio runtime); `apply` takes a group and
    /// returns one outcome per request, in order.
    pub fn start<F, Fut>(apply: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (sender, mut receiver) = mpsc::channel::<Pending<T, R>>(QUEUE);
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match receiver.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                let (requests, replies): (Vec<T>, Vec<_>) = group.into_iter().unzip();
                for (reply, outcome) in replies.into_iter().zip(apply(requests).await) {
                    reply.send(outcome).ok();
                }
            }
        });
        Self { sender }
    }

    /// Applies `request` with whatever others are waiting; fails only if
    /// the task is gone.
    pub async fn submit(&self, request: T) -> anyhow::Result<R> {
        let (reply, outcome) = oneshot::channel();
        self.sender
            .send((request, reply))
            .await
            .map_err(|_| anyhow::anyhow!("a write grouping task has stopped"))?;
        outcome
            .await
            .map_err(|_| anyhow::anyhow!("a write grouping task dropped a request"))
    }
}
