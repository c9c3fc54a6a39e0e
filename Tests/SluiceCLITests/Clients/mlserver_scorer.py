"""A tiny custom MLServer runtime for the tests: a logistic score of the sum of the first input, with a
weight that differs by version (model-settings.json's "version"), so each version answers its own way.
MLServer serves it over REST and gRPC, as it serves any model."""
import math

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class Scorer(MLModel):
    async def load(self) -> bool:
        self.weight = 0.5 if self.settings.version == "v1" else -0.5
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        features = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float64).ravel()
        score = 1 / (1 + math.exp(-self.weight * float(features.sum())))
        return InferenceResponse(
            model_name=self.name,
            model_version=self.settings.version,
            id=payload.id,
            outputs=[NumpyCodec.encode_output("score", np.array([score], dtype=np.float64))],
        )
