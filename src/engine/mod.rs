//! The discrete-event engine: simulated time, the event queue, random streams and the
//! run loop. It knows nothing about services, networks or scenarios.

pub mod queue;
pub mod rng;
pub mod sim;
pub mod time;

pub use rng::{Stream, stream};
pub use sim::{Limits, Model, RunError, RunStats, Scheduler, Simulation, Stop};
pub use time::{SimDuration, SimTime};
