"""PyTorch compute-in-memory simulator driven by fitted device models (layer 8).

>>> from cimlab.sim import AnalogConfig, convert, evaluate, monte_carlo
>>> anet = convert(net, AnalogConfig(device=dm, tile=(256, 64), adc_bits=8, dac_bits=8))
>>> anet.program(generator=torch.Generator().manual_seed(0)); anet.age(3600, temp_c=85)
>>> evaluate(anet, loader)

See docs/simulator.md for the physics and docs/architecture.md section 8 for the contract.
Datasets (:mod:`cimlab.sim.data`), reference networks (:mod:`cimlab.sim.nets`), binarized
layers (:mod:`cimlab.sim.binary_layers`) and training (:mod:`cimlab.sim.training`) are
re-exported here.
"""

from cimlab.sim.analysis import (
    injection_study,
    layer_nrmse,
    layer_outputs,
    neuron_distributions,
    nrmse,
    plot_distributions,
)
from cimlab.sim.binary import xnor_popcount_linear
from cimlab.sim.binary_layers import (
    BinaryActivation,
    BinaryConv2d,
    BinaryLayerMixin,
    BinaryLinear,
    binary_layers,
    clear_bit_errors,
    clip_latent_weights,
    inject_bit_errors,
    set_training_ber,
    sign_ste,
)
from cimlab.sim.config import AnalogConfig
from cimlab.sim.convert import AnalogNetwork, convert
from cimlab.sim.data import Dataset, load_dataset, make_loaders
from cimlab.sim.evaluate import MonteCarloResult, evaluate, monte_carlo, trial_seeds
from cimlab.sim.irdrop import effective_conductance
from cimlab.sim.layers import AnalogConv2d, AnalogLayer, AnalogLinear
from cimlab.sim.mapping import Mapping, TileLayout
from cimlab.sim.nets import NETWORKS, ReferenceNet, build, count_parameters, is_binary, rebuild
from cimlab.sim.training import TrainConfig, load_checkpoint, save_checkpoint, train

__all__ = [
    "NETWORKS",
    "AnalogConfig",
    "AnalogConv2d",
    "AnalogLayer",
    "AnalogLinear",
    "AnalogNetwork",
    "BinaryActivation",
    "BinaryConv2d",
    "BinaryLayerMixin",
    "BinaryLinear",
    "Dataset",
    "Mapping",
    "MonteCarloResult",
    "ReferenceNet",
    "TileLayout",
    "TrainConfig",
    "binary_layers",
    "build",
    "clear_bit_errors",
    "clip_latent_weights",
    "convert",
    "count_parameters",
    "effective_conductance",
    "evaluate",
    "inject_bit_errors",
    "injection_study",
    "is_binary",
    "layer_nrmse",
    "layer_outputs",
    "load_checkpoint",
    "load_dataset",
    "make_loaders",
    "monte_carlo",
    "neuron_distributions",
    "nrmse",
    "plot_distributions",
    "rebuild",
    "save_checkpoint",
    "set_training_ber",
    "sign_ste",
    "train",
    "trial_seeds",
    "xnor_popcount_linear",
]
