# expect: conv2d_filters, activation_activation, gru_units, gru_recurrent_dropout, adamw_learning_rate, adamw_weight_decay, fit_epochs
"""A Conv2D branch with a separate Activation layer and a GRU branch, merged (functional API)."""
import keras
import numpy as np
from keras import layers

rng = np.random.default_rng(5)
images = rng.normal(size=(300, 8, 8, 1)).astype("float32")
sequences = rng.normal(size=(300, 6, 3)).astype("float32")
labels = ((images.mean(axis=(1, 2, 3)) + sequences.mean(axis=(1, 2))) > 0).astype("int64")

image_in = keras.Input(shape=(8, 8, 1))
x = layers.Conv2D(8, 3)(image_in)
x = layers.Activation("relu")(x)
x = layers.GlobalAveragePooling2D()(x)
sequence_in = keras.Input(shape=(6, 3))
s = layers.GRU(12, recurrent_dropout=0.1)(sequence_in)
merged = layers.concatenate([x, s])
out = layers.Dense(2, activation="softmax")(merged)
model = keras.Model([image_in, sequence_in], out)
model.compile(
    optimizer=keras.optimizers.AdamW(learning_rate=0.002, weight_decay=0.004),
    loss="sparse_categorical_crossentropy",
)
model.fit([images[:240], sequences[:240]], labels[:240], epochs=2, verbose=0)
print(model.evaluate([images[240:], sequences[240:]], labels[240:], verbose=0))
