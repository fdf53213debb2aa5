# expect: dense_units, dense_activation, dense_units_2, dropout_rate, leakyrelu_negative_slope, fit_epochs, fit_batch_size, adam_learning_rate
# needs: tensorflow
"""TensorFlow's Keras paths: tf.keras.layers..., an imported Dense, an activation built inline."""

import numpy as np
import tensorflow as tf
from tensorflow.keras.layers import Dense, Dropout

x = np.random.default_rng(4).normal(size=(256, 10)).astype("float32")
y = (x.sum(axis=1) > 0).astype("float32")

model = tf.keras.Sequential(
    [
        tf.keras.Input(shape=(10,)),
        Dense(units=24, activation="relu"),
        Dropout(rate=0.1),
        tf.keras.layers.Dense(12, activation=tf.keras.layers.LeakyReLU(negative_slope=0.2)),
        Dense(1, activation="sigmoid"),
    ]
)
model.compile(optimizer=tf.keras.optimizers.Adam(0.001), loss="binary_crossentropy")
model.fit(x, y, epochs=5, batch_size=16, verbose=0)
print(model.evaluate(x, y, verbose=0))
