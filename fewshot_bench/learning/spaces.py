"""Search spaces ``bench tune`` explores (``space.Param`` ranges), declared once for the families
that share them; a method file names the ones it searches beside its presets.

Koch et al. 2015 (section 4.1) tuned, per layer j, the learning rate eta_j in [1e-4, 1e-1], the
final momentum mu_j in [0, 1] and the L2 weight lambda_j in [0, 0.1]; the conv filters from 3x3 to
20x20 and 16-256 of them in multiples of 16; the fully connected layer from 128 to 4096 units.
"""
from fewshot_bench.space import Param

# Koch's optimiser ranges, per layer (twin layers, fc layer, head). The L2 weight is searched on a
# log scale from 1e-6: a uniform draw over [0, 0.1] would put nine tenths of the trials at an L2
# above 0.01, where the paper's own networks barely train. Momentum stops at 0.99 (1 never decays).
KOCH_SGD = {
    "lr": Param("log", 1e-4, 1e-1, per="layer"),
    "momentum": Param("float", 0.0, 0.99, per="layer"),
    "l2": Param("log", 1e-6, 1e-1, per="layer"),
}
# Koch's architecture ranges, at a CPU size (28x28 inputs: kernels of 3-7 pixels where the paper's
# 105x105 inputs took 3-20; at most 128 filters and 2048 units where it took 256 and 4096)
KOCH_CONV_CPU = {
    "channels": Param("int", 16, 128, 16, per="twin"),
    "kernels": Param("choice", choices=(3, 5, 7), per="twin"),
    "fc_units": Param("int", 128, 2048, 128),
}
# the MLP twin: the paper gives neither its layers nor its units, so both are searched
KOCH_MLP_CPU = {
    "hidden": Param("int", 128, 2048, 128, per="twin"),
    "fc_units": Param("int", 128, 2048, 128),
}
# every other learned method: the Adam rate and weight decay of its recipe
ADAM = {
    "adam_lr": Param("log", 1e-4, 1e-2),
    "weight_decay": Param("log", 1e-7, 1e-3),
}
