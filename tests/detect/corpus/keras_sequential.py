# expect: dense_units, dense_activation, dropout_rate, dense_units_2, dense_activation_2, adam_learning_rate, fit_epochs, fit_batch_size
"""A Keras Sequential classifier on generated data, scored by model.evaluate."""

import keras
import numpy as np
from keras import layers

rng = np.random.default_rng(0)
x = rng.normal(size=(600, 20)).astype("float32")
y = (x[:, :3].sum(axis=1) > 0).astype("int64") + (x[:, 3] > 1).astype("int64")
x_train, y_train, x_test, y_test = x[:500], y[:500], x[500:], y[500:]

model = keras.Sequential(
    [
        keras.Input(shape=(20,)),
        layers.Dense(64, activation="relu"),
        layers.Dropout(0.3),
        layers.Dense(32, activation="tanh"),
        layers.Dense(3, activation="softmax"),  # one unit per class: fixed by the data
    ]
)
model.compile(
    optimizer=keras.optimizers.Adam(learning_rate=1e-3),
    loss="sparse_categorical_crossentropy",
    metrics=["accuracy"],
)
model.fit(x_train, y_train, epochs=3, batch_size=32, verbose=0)
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(f"test loss {loss:.4f}, accuracy {accuracy:.3f}")
