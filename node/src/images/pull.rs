//! A pull's sources, in order: the image's registry, then the peers that hold it once the
//! registry failed (no registry reachable, a tag it lacks, credentials refused); the peers
//! first with `--peers-first` (a metered or slow link to the registry); the peers only for an
//! image pushed into the cluster (the push pinned its name to one id, which a registry's copy
//! of the name may not be).

use super::fetch;
use crate::runtime::credentials::CredentialsFile;
use crate::runtime::{ContainerRuntime, RuntimeError};
use crate::transport::Transport;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::info;
use weeble_core::images::Holder;
use weeble_core::reconcile::pulls::ImagePull;

/// The peers that hold an image, as they are when asked.
pub type HoldersNow = Arc<dyn Fn(&ImagePull) -> Vec<Holder> + Send + Sync>;

/// What a pull needs (see the [module](self)).
pub struct Puller<R, T> {
    pub runtime: R,
    pub transport: T,
    /// Where the registries' credentials are read at each pull (`--registry-auth`).
    pub credentials: Option<CredentialsFile>,
    /// Where a tar from peers is written while it arrives.
    pub dir: PathBuf,
    /// The peers that hold an image as they are now: asked again at each round of a fetch,
    /// as the image spreads.
    pub holders: HoldersNow,
    /// Try the peers before the registry.
    pub peers_first: bool,
}

impl<R: ContainerRuntime, T: Transport> Puller<R, T> {
    /// Brings the image of `pull` into the engine, from the sources in the order the
    /// [module](self) gives; `holders`: the peers the core found holding it.
    pub async fn pull(&self, pull: &ImagePull, holders: &[Holder]) -> Result<(), RuntimeError> {
        let image = &pull.image;
        let peers_known = !holders.is_empty();
        if pull.pushed.is_some() {
            return self.peers(pull, None).await;
        }
        if self.peers_first && peers_known {
            return match self.peers(pull, None).await {
                Err(e) => {
                    info!(%image, error = %e, "fetching from peers failed: pulling from the registry");
                    let pulled = self.registry(image).await;
                    pulled.map_err(|r| RuntimeError::PullFailed(format!("{e}; {r}")))
                }
                fetched => fetched,
            };
        }
        match self.registry(image).await {
            Err(e) if peers_known => {
                let n = holders.len();
                info!(%image, error = %e, holders = n, "pull failed: fetching the image from peers");
                self.peers(pull, Some(e)).await
            }
            pulled => pulled,
        }
    }

    /// Fetches the image of `pull` from the peers that hold it; a failure says why the
    /// registry failed first, if it did.
    async fn peers(
        &self,
        pull: &ImagePull,
        registry: Option<RuntimeError>,
    ) -> Result<(), RuntimeError> {
        let holders = || (self.holders)(pull);
        let fetched = fetch::fetch(&self.transport, &self.runtime, &self.dir, pull, &holders);
        fetched.await.map_err(|why| {
            RuntimeError::PullFailed(match registry {
                Some(e) => format!("{e}; from peers: {why}"),
                None => format!("Failed to fetch image {:?} from peers: {why}", pull.image),
            })
        })
    }

    /// Pulls `image` from its registry, with the credentials the file has for it (read now:
    /// a file fixed since the last pull counts).
    async fn registry(&self, image: &str) -> Result<(), RuntimeError> {
        let registry =
            weeble_crdt::image::Reference::parse(image).map(|r| r.registry().to_string());
        let credentials = match (self.credentials.clone(), registry) {
            (Some(file), Ok(registry)) => {
                let read = tokio::task::spawn_blocking(move || file.for_registry(&registry)).await;
                read.unwrap_or_else(|e| {
                    Err(RuntimeError::Failed(format!("reading credentials: {e}")))
                })?
            }
            _ => None,
        };
        self.runtime.pull(image, credentials).await
    }
}
