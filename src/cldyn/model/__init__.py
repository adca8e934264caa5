"""The networks of CLDyN as plain ``nn.Module`` code: VFN, Basis Vector Bank, A2SI, RSC, ops, colour."""
