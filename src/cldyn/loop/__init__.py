"""The closed loop (CLDyN stage 2), the paper's main idea, in one place.

VFN -> base image -> the frozen task network's features and loss ``L_base`` -> compensated image -> task loss ``L``
-> reward-penalty loss ``L + 5 * max(0, L - L_base)`` -> per-task gradients combined with CAGrad.

- :mod:`cldyn.loop.losses`: the loss terms (reward-penalty, fusion, change, specificity) and their weights;
- :mod:`cldyn.loop.fusion_loss`: the VFN's unsupervised fusion loss (also stage 1's training loss);
- :mod:`cldyn.loop.step`: one step: the base pass, one task's loss and gradient, the combined update;
- :mod:`cldyn.loop.cache`: the frozen halves of the loop kept per batch;
- :mod:`cldyn.loop.cagrad`: CAGrad, with the mean and PCGrad for ablations.

:func:`cldyn.training.rsc.train_rsc` runs these over tasks and steps, with data, checkpoints and validation.
"""
