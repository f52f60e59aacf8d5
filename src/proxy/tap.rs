//! The response body as the client receives it: the upstream's frames, passed on as they
//! arrive, with a [`Meter`] reading a copy and the exchange recorded when the body ends,
//! however it ends (finished, upstream broke, idle too long, cut at shutdown, client gone).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::Exchange;
use crate::usage::Meter;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a response body ended.
enum End {
    Complete,
    UpstreamFailed(String),
    Idle(Duration),
    Cut,
    ClientGone,
}

/// Everything needed to record the exchange once its body ends. The exchange's record
/// already says whether the response streams and its upstream request id.
pub(super) struct Tap {
    pub exchange: Exchange,
    pub meter: Option<Meter>,
    /// The upstream's status.
    pub status: u16,
}

impl Tap {
    pub fn new(exchange: Exchange, meter: Meter, status: u16) -> Tap {
        Tap {
            exchange,
            meter: Some(meter),
            status,
        }
    }

    fn observe(&mut self, data: &Bytes) {
        let elapsed = self.exchange.started.elapsed().as_millis() as u64;
        self.exchange.record.first_token_ms.get_or_insert(elapsed);
        if let Some(meter) = &mut self.meter {
            meter.observe(data, elapsed);
        }
    }

    fn end(&mut self, end: End) {
        let Some(meter) = self.meter.take() else {
            return;
        };
        let metered = meter.finish();
        let end = match end {
            // The client left after the stream's last event: that is a finished exchange.
            // (An upstream body that reports its end ends the exchange with its last frame.)
            End::ClientGone if metered.stream_complete => End::Complete,
            other => other,
        };
        let (status, error) = match end {
            End::Complete
                if self.exchange.record.streaming
                    && !metered.stream_complete
                    && self.status < 300 =>
            {
                (502, Some("stream ended without message_stop".to_string()))
            }
            End::Complete => (self.status, metered.upstream_error.clone()),
            End::UpstreamFailed(e) => (502, Some(format!("upstream stream failed: {e}"))),
            End::Idle(after) => (
                504,
                Some(format!(
                    "stream idle for {}; cut",
                    humantime::format_duration(after)
                )),
            ),
            End::Cut => (503, Some("stream cut at shutdown".to_string())),
            End::ClientGone => (499, Some("client disconnected mid-response".to_string())),
        };
        self.exchange.finish(status, error, metered);
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.end(End::ClientGone);
    }
}

pin_project! {
    /// The client's response body: the upstream body, tapped, with an idle timer.
    ///
    /// The idle timer and the shutdown cut are only armed once the upstream body has made the
    /// client wait: a body that is ready at once (most JSON answers) never touches the timer
    /// wheel or the shared cancellation list.
    pub struct TapBody<B> {
        #[pin]
        inner: B,
        #[pin]
        idle: Sleep,
        idle_timeout: Duration,
        idle_armed: bool,
        cut: CancellationToken,
        cut_wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
        tap: Tap,
        done: bool,
    }
}

impl<B> TapBody<B> {
    pub(super) fn new(inner: B, tap: Tap, idle_timeout: Duration, cut: CancellationToken) -> Self {
        TapBody {
            inner,
            idle: tokio::time::sleep(idle_timeout),
            idle_timeout,
            idle_armed: false,
            cut,
            cut_wait: None,
            tap,
            done: false,
        }
    }
}

impl<B> Body for TapBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display + Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if this.cut.is_cancelled() {
            return cut(this.done, this.tap);
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.tap.observe(data);
                    if *this.idle_armed {
                        restart(this.idle.as_mut(), *this.idle_timeout);
                    }
                }
                if this.inner.is_end_stream() {
                    // The last frame: the exchange ends (and its usage is charged to the
                    // limits) before the client can read it and send its next request.
                    *this.done = true;
                    this.tap.end(End::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                *this.done = true;
                this.tap.end(End::UpstreamFailed(e.to_string()));
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                *this.done = true;
                this.tap.end(End::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let cut_wait = this
                    .cut_wait
                    .get_or_insert_with(|| Box::pin(this.cut.clone().cancelled_owned()));
                if cut_wait.as_mut().poll(cx).is_ready() {
                    return cut(this.done, this.tap);
                }
                if !*this.idle_armed {
                    // The wait starts now; until now every poll found a frame ready.
                    *this.idle_armed = true;
                    restart(this.idle.as_mut(), *this.idle_timeout);
                }
                ready!(this.idle.as_mut().poll(cx));
                *this.done = true;
                this.tap.end(End::Idle(*this.idle_timeout));
                Poll::Ready(Some(Err("upstream stream idle; cut".into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The idle timer now counts `timeout` from this moment.
fn restart(idle: Pin<&mut Sleep>, timeout: Duration) {
    idle.reset(tokio::time::Instant::now() + timeout);
}

fn cut(done: &mut bool, tap: &mut Tap) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    *done = true;
    tap.end(End::Cut);
    Poll::Ready(Some(Err("proxy shutting down".into())))
}
