//! Body wrappers of the proxy. Both stream: a frame goes on as soon as it arrives, and nothing is collected.
//!
//! - [`Sent`] tells when the request body has been passed on in full, which starts the wait for the upstream's
//!   answer (`proxy_upstream_timeout_secs`): an upload of any length may take as long as it takes.
//! - [`Finished`] tells the connection's [`Tracker`] when the response body has been sent in full (or dropped), so
//!   a long download counts as a request in flight, not as an idle connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

use crate::serve::Tracker;

pin_project_lite::pin_project! {
    /// A request body that notifies once it has ended (or failed).
    pub struct Sent<B> {
        #[pin]
        inner: B,
        done: Option<Arc<Notify>>,
    }
}

impl<B: Body> Sent<B> {
    /// Wraps `inner`; the returned `Notify` gets one permit when the body has ended (at once for an empty body,
    /// which hyper may never poll).
    pub fn new(inner: B) -> (Self, Arc<Notify>) {
        let done = Arc::new(Notify::new());
        if inner.is_end_stream() {
            done.notify_one();
            return (Self { inner, done: None }, done);
        }
        (Self { inner, done: Some(done.clone()) }, done)
    }
}

impl<B: Body<Data = Bytes>> Body for Sent<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let res = this.inner.poll_frame(cx);
        if matches!(res, Poll::Ready(None | Some(Err(_)))) {
            if let Some(done) = this.done.take() {
                done.notify_one();
            }
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request in flight on a connection, ended when dropped.
struct InFlight {
    tracker: Arc<Tracker>,
    upgraded: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.tracker.request_finished(self.upgraded);
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends its request on the connection's [`Tracker`] when it has been sent or dropped.
    pub struct Finished<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
    }
}

impl<B> Finished<B> {
    /// Wraps `inner`. The tracker must have been told that the request started. `upgraded`: the answer is a `101`,
    /// after which the connection has no timers.
    pub fn new(inner: B, tracker: Arc<Tracker>, upgraded: bool) -> Self {
        Self { inner, in_flight: Some(InFlight { tracker, upgraded }) }
    }
}

impl<B: Body<Data = Bytes>> Body for Finished<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let res = this.inner.poll_frame(cx);
        if matches!(res, Poll::Ready(None | Some(Err(_)))) {
            this.in_flight.take();
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::time::Duration;

    #[tokio::test]
    async fn sent_notifies_at_the_end_of_the_body_and_at_once_when_empty() {
        let (_, done) = Sent::new(http_body_util::Empty::<Bytes>::new());
        tokio::time::timeout(Duration::from_secs(5), done.notified()).await.expect("an empty body is sent at once");

        let (body, done) = Sent::new(http_body_util::Full::new(Bytes::from_static(b"abc")));
        let waiting = tokio::time::timeout(Duration::from_millis(50), done.notified()).await;
        assert!(waiting.is_err(), "not before the body is read");
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");
        tokio::time::timeout(Duration::from_secs(5), done.notified()).await.expect("read in full");
    }

    #[tokio::test]
    async fn finished_ends_the_request_when_the_body_ends_or_is_dropped() {
        let tracker = Tracker::new(Duration::from_secs(10), Duration::from_secs(60));
        tracker.request_started();
        let body = Finished::new(http_body_util::Full::new(Bytes::from_static(b"abc")), tracker.clone(), false);
        assert_eq!(tracker.in_flight(), 1);
        let mut body = std::pin::pin!(body);
        assert!(body.frame().await.is_some());
        assert_eq!(tracker.in_flight(), 1, "data sent, body not ended");
        assert!(body.frame().await.is_none());
        assert_eq!(tracker.in_flight(), 0);

        tracker.request_started();
        drop(Finished::new(http_body_util::Empty::<Bytes>::new(), tracker.clone(), false));
        assert_eq!(tracker.in_flight(), 0);
    }
}
