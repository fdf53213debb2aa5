# expect: conv1d_filters, conv1d_activation, lstm_units, lstm_dropout, rmsprop_learning_rate, compile_loss, fit_batch_size, fit_epochs
"""A Conv1D + LSTM forecaster on a generated noisy sine wave."""

import keras
import numpy as np

WINDOW = 24  # the input length: fixed by how the data is cut

t = np.arange(1200, dtype="float32")
series = np.sin(t / 20.0) + 0.1 * np.random.default_rng(0).normal(size=t.shape).astype("float32")
windows = np.stack([series[i : i + WINDOW] for i in range(len(series) - WINDOW)])
x, y = windows[:, :, None], series[WINDOW:]

model = keras.Sequential(
    [
        keras.Input(shape=(WINDOW, 1)),
        keras.layers.Conv1D(16, 3, activation="relu"),
        keras.layers.LSTM(32, dropout=0.1),
        keras.layers.Dense(1),
    ]
)
model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.002), loss="mse")
model.fit(x[:1000], y[:1000], batch_size=64, epochs=2, verbose=0)
print("validation mse", model.evaluate(x[1000:], y[1000:], verbose=0))
