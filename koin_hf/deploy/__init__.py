"""Deploying a trained model: `koin export` (ONNX, checked against PyTorch), `koin demo` (a Gradio
app) and the Space-ready `app.py` + `requirements.txt` that `koin push --with-demo` uploads."""
