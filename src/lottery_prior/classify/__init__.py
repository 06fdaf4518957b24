"""Classification tickets versus image-prior tickets (PROTOCOL §7).

* :mod:`.model`: the hourglass as a classifier (conv names identical to the image prior's);
* :mod:`.data`: digits (bundled, default), CIFAR-10 python batches, ImageFolder layout;
* :mod:`.train`: SGD on cross-entropy, masks kept exact;
* :mod:`.imp`: resumable IMP with rewinding for the classifier;
* :mod:`.ticket`: classification ticket files;
* :mod:`.overlap`: IoU of two masks against the exact chance IoU;
* :mod:`.crossuse`: the classification mask used as an image prior;
* :mod:`.report`: tables and plots.

Torch and the rest load with the sub-modules, not with this package.
"""
