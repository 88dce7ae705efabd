//! Worker pipeline (being written).
use crate::config::Config;
use crate::kafka::{EventProducer, Topics};
use crate::metrics::Metrics;
use crate::schema::Codec;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::sync::watch;
pub struct Worker;
impl Worker {
    pub async fn start(_: &Config, _: &Topics, _: Codec, _: Arc<EventProducer>, _: Arc<Metrics>, _: watch::Receiver<bool>) -> Result<Self, crate::app::StartError> { Ok(Worker) }
    pub fn assigned_flags(&self) -> Vec<Arc<AtomicBool>> { vec![] }
    pub fn into_tasks(self) -> Vec<tokio::task::JoinHandle<()>> { vec![] }
}
