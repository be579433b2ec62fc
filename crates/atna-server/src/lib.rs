//! atna's HTTP faces over the domain and a [`Store`](atna_store::Store): the REST API under `/v1`, the verification
//! hot path every Bearer check goes through, health and OpenAPI endpoints. `App` builds it all and runs it.

pub mod api;
mod app;
pub mod audit;
pub mod cidr;
pub mod clock;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod gate;
pub mod leaks;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod per_address;
pub mod prefixes;
pub mod proxy;
pub mod serve;
pub mod service;
pub mod settings;
mod sharded;
pub mod state;
pub mod store_url;
pub mod timeline;
pub mod usage;
pub mod verify;
mod watcher;

pub use app::App;
pub use settings::Settings;
pub use state::AppState;
