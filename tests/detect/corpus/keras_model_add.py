# expect: dense_units, dense_activation, dense_units_2, relu_negative_slope, compile_optimizer, compile_loss, fit_epochs
"""The paper's Figure 1 constructs: model.add with full and short class paths, an activation
object held in a variable, string optimizer and loss; the metric is fit's best val_loss."""

import keras
import numpy as np
from keras.layers import Dense
from keras.models import Sequential

rng = np.random.default_rng(1)
features = rng.uniform(-1, 1, size=(400, 6)).astype("float32")
target = (features @ np.arange(1, 7) / 6.0).astype("float32")

model = Sequential()
model.add(keras.Input(shape=(6,)))
model.add(keras.layers.Dense(128, activation="relu"))
actv = keras.layers.ReLU(negative_slope=0.1)
model.add(Dense(64, activation=actv))
model.add(Dense(1))
model.compile(optimizer="adam", loss="mse")
history = model.fit(features, target, epochs=4, validation_split=0.2, verbose=0)
print(min(history.history["val_loss"]))
