//! [`Catalogue`]: what admins define — games and their configs.

use crate::config::{ConfigSpec, GameServerConfig};
use crate::game_server::{GameServer, NewGameServer};
use crate::host::HostError;
use crate::id::{ConfigId, GameServerId};
use crate::ports::{Clock, ConfigBundle};
use crate::store::Store;
use std::sync::Arc;

/// Games and configs: validated, then kept in the store.
#[derive(Debug, Clone)]
pub struct Catalogue {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl Catalogue {
    /// The catalogue kept in `store`.
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Adds a game to the catalogue.
    pub async fn create_game(&self, game: &NewGameServer) -> Result<GameServer, HostError> {
        game.validate()?;
        Ok(self
            .store
            .catalogue
            .create_game(game, self.clock.now())
            .await?)
    }

    /// Every game.
    pub async fn list_games(&self) -> Result<Vec<GameServer>, HostError> {
        Ok(self.store.catalogue.list_games().await?)
    }

    /// One game.
    pub async fn get_game(&self, id: GameServerId) -> Result<GameServer, HostError> {
        Ok(self.store.catalogue.get_game(id).await?)
    }

    /// Renames a game or changes its type (instances started later use it).
    pub async fn update_game(
        &self,
        id: GameServerId,
        game: &NewGameServer,
    ) -> Result<GameServer, HostError> {
        game.validate()?;
        Ok(self.store.catalogue.update_game(id, game).await?)
    }

    /// Deletes a game without configs (`Conflict` naming them otherwise).
    pub async fn delete_game(&self, id: GameServerId) -> Result<(), HostError> {
        Ok(self.store.catalogue.delete_game(id).await?)
    }

    /// Adds a config to a game.
    pub async fn create_config(
        &self,
        game: GameServerId,
        spec: &ConfigSpec,
    ) -> Result<GameServerConfig, HostError> {
        spec.validate()?;
        Ok(self
            .store
            .catalogue
            .create_config(game, spec, self.clock.now())
            .await?)
    }

    /// Replaces a config's spec; running instances keep what they started with.
    pub async fn update_config(
        &self,
        id: ConfigId,
        spec: &ConfigSpec,
    ) -> Result<GameServerConfig, HostError> {
        spec.validate()?;
        Ok(self.store.catalogue.update_config(id, spec).await?)
    }

    /// Deletes a config and the records of its ended instances; `Conflict` naming the active
    /// ones while any is.
    pub async fn delete_config(&self, id: ConfigId) -> Result<(), HostError> {
        Ok(self.store.catalogue.delete_config(id).await?)
    }

    /// Configs of one game (which must exist), or of all games.
    pub async fn list_configs(
        &self,
        game: Option<GameServerId>,
    ) -> Result<Vec<GameServerConfig>, HostError> {
        if let Some(game) = game {
            self.store.catalogue.get_game(game).await?;
        }
        Ok(self.store.catalogue.list_configs(game).await?)
    }

    /// One config.
    pub async fn get_config(&self, id: ConfigId) -> Result<GameServerConfig, HostError> {
        Ok(self.store.catalogue.get_config(id).await?)
    }

    /// A config with its game, as a worker needs it.
    pub async fn config_bundle(&self, id: ConfigId) -> Result<ConfigBundle, HostError> {
        Ok(self.store.catalogue.get_config_bundle(id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game_server::ServerType;
    use crate::host::HostService;

    #[tokio::test]
    async fn a_catalogue_validates_before_it_stores_and_bundles_a_config_with_its_game() {
        let host = HostService::in_memory().await.expect("host");
        let catalogue = host.catalogue();
        let refused = catalogue
            .create_game(&NewGameServer {
                name: String::new(),
                server_type: ServerType::Local {
                    path: "games/x".to_owned(),
                },
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, HostError::Invalid(v) if v.to_string().contains("name")),
            "names the field: {refused}"
        );
        assert!(
            catalogue.list_games().await.unwrap().is_empty(),
            "nothing stored"
        );

        let game = catalogue
            .create_game(&crate::testing::fixture::local_game("valheim"))
            .await
            .unwrap();
        let config = catalogue
            .create_config(game.id, &ConfigSpec::new("main", "server"))
            .await
            .unwrap();
        let bundle = catalogue.config_bundle(config.id).await.unwrap();
        assert_eq!((bundle.game.id, bundle.config.id), (game.id, config.id));
        let missing = catalogue
            .list_configs(Some(GameServerId(game.id.get() + 1000)))
            .await
            .unwrap_err();
        assert!(matches!(missing, HostError::NotFound { .. }), "{missing}");
        let refused = catalogue.delete_game(game.id).await.unwrap_err();
        assert!(
            matches!(&refused, HostError::Conflict { detail, .. } if detail.contains(&config.id.to_string())),
            "a game with configs is kept, naming them: {refused}"
        );
    }
}
