"""Training: the shared loop, VFN, task networks, the closed loop (RSC), losses, CAGrad, processes."""
