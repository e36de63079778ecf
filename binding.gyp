{
  "targets": [
    {
      "target_name": "beckon_splice",
      "sources": ["native/splice.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
