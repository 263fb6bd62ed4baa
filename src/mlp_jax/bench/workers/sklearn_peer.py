"""scikit-learn's MLPClassifier: seconds of training to a target test accuracy on digits (mode "digits")."""

import time

import numpy as np
import sklearn
from _common import answer, request
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

req = request()
x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.2, random_state=0, stratify=y)
model = MLPClassifier(
    hidden_layer_sizes=tuple(req["hidden"]),
    solver="adam",
    learning_rate_init=1e-3,
    batch_size=req["batch"],
    random_state=0,
)
seconds, accuracy = 0.0, 0.0
for epoch in range(1, req["max_epochs"] + 1):  # noqa: B007 (the count is reported after the loop)
    start = time.perf_counter()
    model.partial_fit(x_train, y_train, classes=np.arange(10))
    seconds += time.perf_counter() - start
    accuracy = float(model.score(x_test, y_test))
    if accuracy >= req["target"]:
        break
answer(
    {
        "version": sklearn.__version__,
        "seconds": seconds,
        "epochs": epoch,
        "accuracy": accuracy,
        "reached": accuracy >= req["target"],
    }
)
