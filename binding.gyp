{
  "targets": [
    {
      "target_name": "ddpm_native",
      "sources": ["native/ddpm_native.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_CPP_EXCEPTIONS", "NAPI_VERSION=8"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-fopenmp", "-fexceptions", "-fno-math-errno", "-Wno-unused-parameter", "-Wno-cast-function-type"],
      "libraries": ["-ldnnl", "-fopenmp"]
    }
  ]
}
