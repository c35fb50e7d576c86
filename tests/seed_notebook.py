"""The seed notebook's printed results, as the golden tests read them
(tests/test_golden.py, tests/test_notebook.py).

The expected strings are copied from the notebook's output cells
(../shared/seed/000_a015704251cd606b.txt), printed there with NumPy's default
print options.
"""
from __future__ import annotations

# The notebook's printed parameters, exactly as printed (f"{array}").
NOTEBOOK_PRINTED = {
    "hidden weight": ("[[ 1.77287337 -0.19123894]\n"
                      " [ 1.21893235 -0.3820917 ]\n"
                      " [ 1.84963539 -0.20055538]\n"
                      " [ 0.8768276  -0.16608484]]"),
    "hidden bias": "[0.02536611 0.01382147 0.0251332  0.01305339]",
    "output weight": "[[1.71187452 1.19856222 1.76712731 0.87289168]]",
    "output bias": "[0.03423008]",
}
NOTEBOOK_PREDICTION = 165.324277          # printed as [[165.324277]]
NOTEBOOK_ERROR = 0.1051555710067635      # printed as error: 0.1051555710067635
ERROR_RTOL = 1e-12                        # the golden tolerance

# NumPy's default print options (np.set_printoptions docs), pinned so that a
# user's or another test's settings cannot change the printed digits.
DEFAULT_PRINTOPTIONS = dict(precision=8, threshold=1000, edgeitems=3, linewidth=75,
                            suppress=False, nanstr="nan", infstr="inf", sign="-",
                            floatmode="maxprec", legacy=False)
