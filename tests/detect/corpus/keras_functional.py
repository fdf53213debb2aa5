# expect: units, dense_activation, dropout, batchnormalization_momentum, sgd_learning_rate, sgd_momentum, fit_epochs
"""The Keras functional API with constants for the width and the dropout rate."""

import numpy as np
from keras import Input, Model, layers, optimizers

UNITS = 48
DROPOUT = 0.25
N_FEATURES = 16

rng = np.random.default_rng(2)
x = rng.normal(size=(500, N_FEATURES)).astype("float32")
y = (x[:, 0] * x[:, 1] > 0).astype("float32")

inputs = Input(shape=(N_FEATURES,))
h = layers.Dense(UNITS, activation="relu")(inputs)
h = layers.BatchNormalization(momentum=0.9)(h)
h = layers.Dropout(DROPOUT)(h)
outputs = layers.Dense(1, activation="sigmoid")(h)
model = Model(inputs=inputs, outputs=outputs)
model.compile(
    optimizer=optimizers.SGD(learning_rate=0.01, momentum=0.9), loss="binary_crossentropy"
)
model.fit(x[:400], y[:400], epochs=3, verbose=0)
print(model.evaluate(x[400:], y[400:], verbose=0))
