"""Export LANTERN models where the ecosystem already is, and bring models back.

- `hf_export`: a `transformers` directory with its tokenizer;
- `gguf_export`: one GGUF file for llama.cpp;
- `hf_import`, `gguf_import`: a local `transformers` directory or a GGUF file as a LANTERN model;
- `llamacpp`: text generation from a GGUF file through llama.cpp;
- `describe`: what any model file holds (`lantern info`); `hub`: uploads to the Hugging Face Hub.

`architecture` decides, once, which standard architecture computes the same function; each
architecture (Llama, Mistral, Qwen2, GPT-2) is one module of `arches`, found through its registry.
"""
