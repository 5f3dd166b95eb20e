//! Request bodies. A client's body, dropped before its end (the gateway answered first: a
//! 413, 429 or 503, an upstream's early answer, a failure mid-upload), reads and throws
//! away the rest in the background for a bounded while, so the client can finish sending
//! and read the answer: dropped unread, hyper would close the connection with bytes unread
//! and the close would reset the client's upload. A capped body fails past its cap. A body
//! with a deadline fails when it has not arrived whole in time, and tells whether it was
//! waiting on the client, so a timeout is blamed on whoever caused it: a client that sends
//! headers and one byte holds no slot for ever, and never counts against an upstream.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use axum::body::{Body, Bytes};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming, SizeHint};

use super::timer::Sleep;

/// The most of a body read after the gateway answered, and for how long at most.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client's request body as hyper reads it; dropped before its end, the rest is read and
/// thrown away in the background, bounded in bytes and time.
pub struct DownstreamBody(Option<Incoming>);

impl DownstreamBody {
    /// Wraps the body hyper read.
    pub fn new(incoming: Incoming) -> Self {
        Self(Some(incoming))
    }
}

impl Drop for DownstreamBody {
    fn drop(&mut self) {
        let Some(mut rest) = self.0.take() else {
            return;
        };
        if hyper::body::Body::is_end_stream(&rest) {
            return;
        }
        // A body dropped off the runtime (at its shutdown) has nobody left to answer.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let mut read = 0;
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while let Some(Ok(frame)) = rest.frame().await {
                    read += frame.data_ref().map_or(0, Bytes::len);
                    if read > DRAIN_BYTES {
                        return;
                    }
                }
            })
            .await;
        });
    }
}

impl hyper::body::Body for DownstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.0.as_mut() {
            Some(incoming) => Pin::new(incoming).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

/// The error a capped body fails with past its cap.
#[derive(Debug, thiserror::Error)]
#[error("the body is larger than {limit} bytes")]
pub struct TooLarge {
    /// The cap.
    pub limit: usize,
}

/// A body that fails with `TooLarge` past `limit` bytes, and then lets go of the rest.
pub struct CappedBody {
    inner: Option<Body>,
    read: usize,
    limit: usize,
}

impl CappedBody {
    /// Caps `body` at `limit` bytes.
    pub fn new(body: Body, limit: usize) -> Self {
        Self {
            inner: Some(body),
            read: 0,
            limit,
        }
    }
}

impl hyper::body::Body for CappedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match ready!(Pin::new(inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        this.read += frame.data_ref().map_or(0, Bytes::len);
        if this.read > this.limit {
            this.inner = None;
            return Poll::Ready(Some(Err(Box::new(TooLarge { limit: this.limit }))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// The error a body with a deadline fails with once the deadline has passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// Where a body with a deadline is, as its reader last saw it.
#[derive(Debug, Clone, Default)]
pub struct BodyProgress(Arc<AtomicU8>);

const READING: u8 = 0;
const WAITING_ON_CLIENT: u8 = 1;
const ENDED: u8 = 2;

impl BodyProgress {
    /// Whether the last read found the client's next bytes not there yet: a deadline that
    /// passes now is the client's doing.
    pub fn is_waiting_on_client(&self) -> bool {
        self.0.load(Ordering::Relaxed) == WAITING_ON_CLIENT
    }

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }
}

/// A body that fails with `BodyTimeout` unless it ends within its deadline.
pub struct DeadlineBody {
    inner: Option<Body>,
    deadline: Sleep,
    limit: Duration,
    progress: BodyProgress,
}

impl DeadlineBody {
    /// `body`, which must end within `limit` from now; `progress` follows its reading.
    pub fn new(body: Body, limit: Duration) -> (Self, BodyProgress) {
        let progress = BodyProgress::default();
        let body = Self {
            inner: Some(body),
            deadline: Sleep::until(Instant::now() + limit),
            limit,
            progress: progress.clone(),
        };
        (body, progress)
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.progress.set(ENDED);
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => {
                this.progress.set(READING);
                Poll::Ready(Some(frame.map_err(Into::into)))
            }
            Poll::Pending => {
                this.progress.set(WAITING_ON_CLIENT);
                ready!(Pin::new(&mut this.deadline).poll(cx));
                // Dropping the client's body lets `DownstreamBody` drain what may still come.
                this.inner = None;
                Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// Whether `error`, or an error it was caused by, is a `T`.
pub fn caused_by<T: std::error::Error + 'static>(
    error: &(dyn std::error::Error + 'static),
) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.is::<T>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_within_the_cap_passes_whole() {
        let capped = CappedBody::new(Body::from(vec![7u8; 1000]), 1000);
        let bytes = capped.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 1000);
    }

    #[tokio::test]
    async fn a_body_that_stalls_past_its_deadline_fails_and_says_it_waited_on_the_client() {
        let (sender, stalled) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        sender
            .send(Ok(Frame::data(Bytes::from_static(b"x"))))
            .await
            .unwrap();
        let stream = futures_util::stream::unfold(stalled, |mut r| async {
            r.recv().await.map(|frame| (frame, r))
        });
        let body = Body::new(http_body_util::StreamBody::new(stream));
        let (mut body, progress) = DeadlineBody::new(body, Duration::from_millis(50));
        assert!(body.frame().await.unwrap().is_ok());
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(caused_by::<BodyTimeout>(&*error), "{error}");
        assert!(progress.is_waiting_on_client());
        assert!(body.frame().await.is_none());
        drop(sender);
    }

    #[tokio::test]
    async fn a_body_that_ends_in_time_passes_whole() {
        let (body, progress) = DeadlineBody::new(Body::from("hello"), Duration::from_secs(5));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        assert!(!progress.is_waiting_on_client());
    }

    #[tokio::test]
    async fn a_body_past_the_cap_fails_and_ends() {
        let chunks = (0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 100])));
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let mut capped = CappedBody::new(body, 250);
        let mut read = 0;
        let error = loop {
            match capped.frame().await.expect("an error before the end") {
                Ok(frame) => read += frame.into_data().unwrap().len(),
                Err(e) => break e,
            }
        };
        assert!(error.is::<TooLarge>());
        assert_eq!(read, 200);
        assert!(hyper::body::Body::is_end_stream(&capped));
        assert!(capped.frame().await.is_none());
    }
}
