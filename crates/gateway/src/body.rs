//! Request bodies capped as they stream. Past the cap the upstream's copy fails, and the
//! rest of the client's body is read and thrown away for a bounded while, so the client can
//! finish sending and read the 413 instead of having its connection reset mid-upload.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::body::{Body, Bytes};
use futures_util::StreamExt as _;
use hyper::body::{Frame, SizeHint};
use tokio::sync::oneshot;

/// The most of an oversized body read after the 413, and for how long at most.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a capped body fails with past its cap.
#[derive(Debug, thiserror::Error)]
#[error("the body is larger than {limit} bytes")]
pub struct TooLarge {
    /// The cap.
    pub limit: usize,
}

/// A body that fails with `TooLarge` past `limit` bytes and hands back what it did not read.
pub struct CappedBody {
    inner: Option<Body>,
    read: usize,
    limit: usize,
    rest: Option<oneshot::Sender<Body>>,
}

/// Where a capped body's unread rest arrives when it overflows.
pub struct Overflow(oneshot::Receiver<Body>);

impl CappedBody {
    /// Caps `body` at `limit` bytes.
    pub fn new(body: Body, limit: usize) -> (Self, Overflow) {
        let (tx, rx) = oneshot::channel();
        let capped = Self {
            inner: Some(body),
            read: 0,
            limit,
            rest: Some(tx),
        };
        (capped, Overflow(rx))
    }
}

impl Overflow {
    /// Reads and discards the rest of an overflowed body in the background.
    pub fn drain(mut self) {
        if let Ok(rest) = self.0.try_recv() {
            drain(rest);
        }
    }
}

/// Reads and discards what is left of `body` in the background, bounded in bytes and time.
pub fn drain(body: Body) {
    if hyper::body::Body::is_end_stream(&body) {
        return;
    }
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut read = 0;
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(Ok(chunk)) = stream.next().await {
                read += chunk.len();
                if read > DRAIN_BYTES {
                    return;
                }
            }
        })
        .await;
    });
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
            if let (Some(rest), Some(tx)) = (this.inner.take(), this.rest.take()) {
                let _ = tx.send(rest);
            }
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

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test]
    async fn a_body_within_the_cap_passes_whole() {
        let (capped, _) = CappedBody::new(Body::from(vec![7u8; 1000]), 1000);
        let bytes = capped.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 1000);
    }

    #[tokio::test]
    async fn a_body_past_the_cap_fails_and_hands_back_its_rest() {
        let chunks = (0..4).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 100])));
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let (capped, mut overflow) = CappedBody::new(body, 250);
        let error = capped.collect().await.unwrap_err();
        assert!(error.is::<TooLarge>());
        let rest = overflow.0.try_recv().expect("the unread rest");
        assert_eq!(rest.collect().await.unwrap().to_bytes().len(), 100);
    }
}
