{
  "target_defaults": {
    "sources": [
      "native/binding.cc", "native/binding_ops.cc", "native/conv.cc", "native/norm.cc", "native/elementwise.cc",
      "native/optim.cc", "native/random.cc"
    ],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_CPP_EXCEPTIONS", "NAPI_VERSION=8"],
    "cflags": ["-fvisibility=hidden"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions"],
    "libraries": ["-ldnnl", "-fopenmp"]
  },
  "targets": [
    {
      "target_name": "ddpm_native",
      "cflags_cc": ["-std=c++17", "-O3", "-fopenmp", "-fexceptions", "-fno-math-errno", "-fno-trapping-math", "-Wno-unused-parameter", "-Wno-cast-function-type"]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "ddpm_native_v3",
          "defines": ["DDPM_LEVEL_V3"],
          "cflags_cc": ["-std=c++17", "-O3", "-fopenmp", "-fexceptions", "-fno-math-errno", "-fno-trapping-math", "-Wno-unused-parameter", "-Wno-cast-function-type", "-march=x86-64-v3"]
        },
        {
          "target_name": "ddpm_native_v4",
          "defines": ["DDPM_LEVEL_V4"],
          "cflags_cc": ["-std=c++17", "-O3", "-fopenmp", "-fexceptions", "-fno-math-errno", "-fno-trapping-math", "-Wno-unused-parameter", "-Wno-cast-function-type", "-march=x86-64-v4", "-mprefer-vector-width=512"]
        }
      ]
    }]
  ]
}
