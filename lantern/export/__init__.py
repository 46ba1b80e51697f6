"""Export LANTERN models where the ecosystem already is, and bring models back.

- `hf_export`: a `transformers` directory (Llama, Mistral or GPT-2) with its tokenizer;
- `gguf_export`: one GGUF file for llama.cpp (architectures `llama` and `gpt2`);
- `hf_import`: a local `transformers` Llama/Mistral/GPT-2 directory as a LANTERN model;
- `llamacpp`: text generation from a GGUF file through llama.cpp;
- `describe`: what any model file holds (`lantern info`); `hub`: uploads to the Hugging Face Hub.

`architecture` decides, once, which standard architecture computes the same function.
"""
