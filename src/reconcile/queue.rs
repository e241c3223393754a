//! A bounded work queue of keys that holds each key at most once.
//!
//! A watch delivers many events for one pod; the worker needs only "look at this pod again",
//! and reads the newest copy from the cache when it gets to it. So a key already queued is not
//! queued twice, and the queue never holds more keys than it has room for: on overflow the key
//! is dropped and counted, and the next periodic resync queues it again.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

use tokio::sync::Notify;

/// What [`WorkQueue::push`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Added,
    /// Already queued; nothing changed.
    Duplicate,
    /// The queue is full; dropped.
    Full,
}

struct Inner<K> {
    order: VecDeque<K>,
    queued: HashSet<K>,
}

/// A FIFO of distinct keys with a capacity.
pub struct WorkQueue<K> {
    inner: Mutex<Inner<K>>,
    capacity: usize,
    ready: Notify,
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    /// An empty queue holding at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                order: VecDeque::new(),
                queued: HashSet::new(),
            }),
            capacity: capacity.max(1),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `key` unless it is queued already or the queue is full.
    pub fn push(&self, key: K) -> Pushed {
        let mut inner = self.lock();
        if inner.queued.contains(&key) {
            return Pushed::Duplicate;
        }
        if inner.order.len() >= self.capacity {
            return Pushed::Full;
        }
        inner.queued.insert(key.clone());
        inner.order.push_back(key);
        drop(inner);
        self.ready.notify_one();
        Pushed::Added
    }

    /// The oldest key, if any.
    pub fn try_pop(&self) -> Option<K> {
        let mut inner = self.lock();
        let key = inner.order.pop_front()?;
        inner.queued.remove(&key);
        Some(key)
    }

    /// The oldest key, waiting for one.
    pub async fn pop(&self) -> K {
        loop {
            let notified = self.ready.notified();
            if let Some(k) = self.try_pop() {
                return k;
            }
            notified.await;
        }
    }

    /// Keys queued now.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_held_once_and_order_is_kept() {
        let q = WorkQueue::new(10);
        assert_eq!(q.push("a"), Pushed::Added);
        assert_eq!(q.push("b"), Pushed::Added);
        assert_eq!(q.push("a"), Pushed::Duplicate);
        assert_eq!(q.len(), 2);
        assert_eq!(q.try_pop(), Some("a"));
        // Once taken, a key can be queued again (the pod changed while it was being handled).
        assert_eq!(q.push("a"), Pushed::Added);
        assert_eq!(q.try_pop(), Some("b"));
        assert_eq!(q.try_pop(), Some("a"));
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_queue_drops_new_keys() {
        let q = WorkQueue::new(2);
        q.push(1);
        q.push(2);
        assert_eq!(q.push(3), Pushed::Full);
        assert_eq!(q.len(), 2);
    }

    #[tokio::test]
    async fn pop_waits_for_a_push() {
        let q = std::sync::Arc::new(WorkQueue::new(4));
        let q2 = std::sync::Arc::clone(&q);
        let waiter = tokio::spawn(async move { q2.pop().await });
        tokio::task::yield_now().await;
        q.push(7);
        assert_eq!(waiter.await.expect("join"), 7);
    }
}
