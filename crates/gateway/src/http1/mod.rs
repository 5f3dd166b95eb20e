//! The gateway's own HTTP/1.1, on both sides of the proxy (`GATEWAY_HTTP=own`, the default):
//! the downstream side reads and answers a client's simple requests itself and hands any
//! other connection to hyper's server; the upstream side speaks to the services on the task
//! of the request that uses the connection, over connections pooled per serving thread.
//! Request bodies (capped, with a deadline, drained when dropped) and the serving threads'
//! coarse timer serve both sides. Only what the rest of the gateway calls is visible outside.

mod body;
mod downstream;
mod pool;
mod timer;
mod upstream;

pub(crate) use body::{
    BodyProgress, BodyTimeout, CappedBody, DeadlineBody, DownstreamBody, TooLarge, caused_by,
};
pub(crate) use downstream::{refuse_connection, serve};
pub(crate) use pool::{ConnectError, Pool, PoolSettings, Pooled, idle_list};
pub(crate) use timer::{Timer, run as run_timer, timeout};
pub(crate) use upstream::{ExchangeError, Forwarding, Outgoing, ResponseHead, exchange};
