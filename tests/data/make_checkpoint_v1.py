"""Written with nnparity at commit 9918827 (checkpoint format v1)."""
import numpy as np
from nnparity.shared import NetworkSpec, Adam, Dataset, save_checkpoint
from nnparity.backends import train, predict
spec = NetworkSpec(sizes=(3, 5, 4, 2), activation=("tanh", "leaky_relu"),
                   activation_params={"leaky_relu": {"negative_slope": 0.1}},
                   init="xavier_uniform", optimizer=Adam(lr=0.01), batch_size=4, epochs=3, seed=7)
rng = np.random.default_rng(0)
x = rng.standard_normal((10, 3)); y = rng.standard_normal((10, 2))
r = train(spec, Dataset(x, y, x[:4], y[:4]), "numpy")
save_checkpoint("/work/main/tests/data/checkpoint_v1.npz", spec, r.params, r.opt_state, epochs_done=3)
xq = rng.standard_normal((6, 3))
np.save("/work/main/tests/data/checkpoint_v1_x.npy", xq)
np.save("/work/main/tests/data/checkpoint_v1_predictions.npy", predict(spec, r.params, xq))
print(r.opt_state["step"], [w.shape for w, b in r.params])
