"""Model definitions: how each model's data is made, how it is trained, judged and what it must reach.

scikit-learn conventions throughout: estimators are built unfitted, ``fit`` on the training part, learned
state lives in the estimator (the health model's ``threshold_`` too). Every model is a ``Pipeline`` (scaler +
estimator) that skl2onnx converts whole.

An isolation forest was tried for vehicle health first and found 0.4% of faulty windows: it scores points
beyond the training range like the most extreme training points, and healthy data span cold starts. A
density model sees that a warm engine's coolant and a charging battery's voltage are tightly held.

- driving_style: logistic regression over 4 classes; one row per trip, persona labels; held-out floors
  accuracy >= 0.85 and macro F1 >= 0.85.
- vehicle_health: a Gaussian mixture of healthy one-minute windows, anomalous below the 0.5% quantile of
  healthy likelihoods; injected faults as truth; floors precision >= 0.9 and recall >= 0.9.
- churn_risk: gradient-boosted trees; one row per customer, simulated churn; floor ROC AUC >= 0.75.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from edge_agent.features import HEALTH_FEATURES, STYLE_FEATURES
from simulators.customers import CHURN_FEATURES

from .datasets import Dataset, churn_dataset, health_dataset, style_dataset


@dataclass(frozen=True)
class ModelDefinition:
    """What it takes to build, judge and describe one model."""

    name: str
    task: str  # classification | anomaly | risk
    description: str
    features: tuple[str, ...]
    make_data: Callable[[int], Dataset]
    make_estimator: Callable[[int], Pipeline]
    fit: Callable[[Pipeline, Dataset], Pipeline]
    evaluate: Callable[[Pipeline, Dataset], dict[str, float]]
    floors: dict[str, float]
    outputs: dict[str, str]
    held_out_share: float = 0.25
    onnx_options: dict[str, Any] = field(default_factory=dict)
    #: float64 where float32 would not reproduce scikit-learn within 1e-5 (log-likelihoods in the thousands)
    onnx_dtype: str = "float32"


# -------------------------------------------------------------------------------------------- driving style


def _style_estimator(seed: int) -> Pipeline:
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(C=1.0, max_iter=5000, random_state=seed)),
        ]
    )


def _fit_all(model: Pipeline, data: Dataset) -> Pipeline:
    return model.fit(data.X, data.y)


def _evaluate_style(model: Pipeline, held: Dataset) -> dict[str, float]:
    predicted = model.predict(held.X)
    return {
        "accuracy": float(accuracy_score(held.y, predicted)),
        "macro_f1": float(f1_score(held.y, predicted, average="macro")),
    }


DRIVING_STYLE = ModelDefinition(
    name="driving_style",
    task="classification",
    features=STYLE_FEATURES,
    description="Driving style of one trip: calm commuter, aggressive, night driver or highway.",
    make_data=lambda seed: style_dataset(vehicles=48, days=5, seed=seed),
    make_estimator=_style_estimator,
    fit=_fit_all,
    evaluate=_evaluate_style,
    floors={"accuracy": 0.85, "macro_f1": 0.85},
    outputs={"label": "the most likely style", "probabilities": "probability of each style, in class order"},
    onnx_options={"zipmap": False},
)


# ------------------------------------------------------------------------------------------ vehicle health


#: share of healthy training windows that fall below the anomaly threshold (the false-alarm budget)
HEALTH_FALSE_ALARM_QUANTILE = 0.005


def _health_estimator(seed: int) -> Pipeline:
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("density", GaussianMixture(n_components=3, covariance_type="full", random_state=seed)),
        ]
    )


def _fit_healthy(model: Pipeline, data: Dataset) -> Pipeline:
    """Learn what normal looks like (healthy windows only) and where "unlikely" begins (``threshold_``)."""
    healthy = data.X[data.y == 0]
    model.fit(healthy)
    model.threshold_ = float(np.quantile(model.score_samples(healthy), HEALTH_FALSE_ALARM_QUANTILE))
    return model


def _evaluate_health(model: Pipeline, held: Dataset) -> dict[str, float]:
    judged = held.y >= 0  # windows of a developing fault are neither
    truth = held.y[judged] == 1
    flagged = model.score_samples(held.X[judged]) < model.threshold_
    return {
        "precision": float(precision_score(truth, flagged, zero_division=0.0)),
        "recall": float(recall_score(truth, flagged, zero_division=0.0)),
        "false_alarm_rate": float(np.mean(flagged[~truth])) if (~truth).any() else 0.0,
    }


VEHICLE_HEALTH = ModelDefinition(
    name="vehicle_health",
    task="anomaly",
    features=HEALTH_FEATURES,
    description="Whether a minute of engine data is unlike healthy operation (cooling, charging, misfire).",
    make_data=lambda seed: health_dataset(vehicles=40, days=3, seed=seed),
    make_estimator=_health_estimator,
    fit=_fit_healthy,
    evaluate=_evaluate_health,
    floors={"precision": 0.9, "recall": 0.9},
    outputs={
        "score_samples": "log-likelihood of the window under healthy operation; below threshold: anomalous"
    },
    onnx_options={"score_samples": True},
    onnx_dtype="float64",
)


# ----------------------------------------------------------------------------------------------- churn risk


def _churn_estimator(seed: int) -> Pipeline:
    return Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "boost",
                GradientBoostingClassifier(
                    n_estimators=120, max_depth=3, learning_rate=0.1, random_state=seed
                ),
            ),
        ]
    )


def _evaluate_churn(model: Pipeline, held: Dataset) -> dict[str, float]:
    truth = held.y.astype(int)
    risk = model.predict_proba(held.X)[:, 1]
    return {
        "roc_auc": float(roc_auc_score(truth, risk)),
        "churn_rate": float(truth.mean()),
        "precision_at_top_decile": float(truth[np.argsort(-risk)[: max(1, len(risk) // 10)]].mean()),
    }


def _churn_data(seed: int) -> Dataset:
    return churn_dataset(customers=6000, seed=seed)


CHURN_RISK = ModelDefinition(
    name="churn_risk",
    task="risk",
    features=CHURN_FEATURES,
    description="Probability that a customer leaves the brand's service network within the next six months.",
    make_data=_churn_data,
    make_estimator=_churn_estimator,
    fit=lambda model, data: model.fit(data.X, data.y.astype(int)),
    evaluate=_evaluate_churn,
    floors={"roc_auc": 0.75},
    outputs={"label": "1 likely to churn", "probabilities": "probability of [stay, churn]"},
    onnx_options={"zipmap": False},
)

DEFINITIONS: dict[str, ModelDefinition] = {d.name: d for d in (DRIVING_STYLE, VEHICLE_HEALTH, CHURN_RISK)}


@dataclass
class Trained:
    """A fitted model with its data and held-out metrics."""

    definition: ModelDefinition
    model: Pipeline
    train: Dataset
    held_out: Dataset
    metrics: dict[str, float]
    seed: int

    def __getstate__(self) -> dict[str, Any]:
        # definitions hold functions: pickle the name, look the definition up again on load
        state = dict(self.__dict__)
        state["definition"] = self.definition.name
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["definition"] = DEFINITIONS[state["definition"]]
        self.__dict__.update(state)


def train(name: str, seed: int, data: Dataset | None = None) -> Trained:
    """Make the data (or take real data), split by vehicle or customer, fit, evaluate on the held-out part."""
    definition = DEFINITIONS[name]
    dataset = data if data is not None else definition.make_data(seed)
    train_part, held = dataset.split(definition.held_out_share, seed)
    model = definition.fit(definition.make_estimator(seed), train_part)
    return Trained(definition, model, train_part, held, definition.evaluate(model, held), seed)
