"""The registry's champion: none before the first promotion, an error when the registry cannot answer."""

import pytest
from mlflow.exceptions import MlflowException

from mmm_assets.core.config import DEFAULT_MARKET
from mmm_assets.core.stores import tracking


class _Registry:
    """A client whose champion lookup raises ``error`` (or finds nothing to raise)."""

    def __init__(self, error: MlflowException) -> None:
        self.error = error

    def get_model_version_by_alias(self, name: str, alias: str):
        raise self.error


def test_no_champion_before_the_first_promotion_in_a_real_store(small_config, tmp_path):
    from mlflow import MlflowClient

    cfg = small_config().for_market(DEFAULT_MARKET)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    assert tracking.champion(client, cfg) is None  # no registered model
    client.create_registered_model(tracking.model_name(cfg))
    assert tracking.champion(client, cfg) is None  # a model, no champion alias


def test_a_registry_that_cannot_answer_is_an_error_not_no_champion(small_config):
    cfg = small_config().for_market(DEFAULT_MARKET)
    failing = MlflowException("API request failed with error code 500 != 200", error_code="INTERNAL_ERROR")
    with pytest.raises(MlflowException, match="error code 500"):
        tracking.champion(_Registry(failing), cfg)
