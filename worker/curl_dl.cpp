// The libcurl functions the gateway calls (worker/http_client.cpp, master/check.cpp), defined
// here and forwarded to libcurl.so.4, which is loaded with dlopen on the first call. Linked
// normally, libcurl brought 25 libraries into every process of the gateway (GnuTLS, Kerberos,
// LDAP, libssh2, p11-kit, ...), about 4 MiB of RSS per process at start-up, while only a
// gateway with OnOpenCallbackApi/OnCloseCallbackApi ever uses it (docs/PERFORMANCE.md, "Idle
// memory"). The Debian package names libcurl4 in Depends (packaging/deb.cmake).
//
// When the library cannot be loaded every function fails the way libcurl fails for a missing
// resource (nullptr handles, CURLE_FAILED_INIT, CURLM_INTERNAL_ERROR, CURLUE_OUT_OF_MEMORY) and
// the error strings say why, so a callback fails with that text and `netsvr check` refuses a
// callback URL with it.
#define CURL_DISABLE_TYPECHECK  // our definitions below, not curl's type-checking macros
#include "worker/curl_dl.hpp"

#include <curl/curl.h>
#include <dlfcn.h>
#include <stdarg.h>

#include <string>

namespace {

constexpr const char* kLibrary = "libcurl.so.4";

struct Api {
  bool loaded = false;
  std::string error;
  decltype(&::curl_global_init) global_init = nullptr;
  decltype(&::curl_free) free = nullptr;
  decltype(&::curl_easy_init) easy_init = nullptr;
  decltype(&::curl_easy_cleanup) easy_cleanup = nullptr;
  decltype(&::curl_easy_setopt) easy_setopt = nullptr;
  decltype(&::curl_easy_getinfo) easy_getinfo = nullptr;
  decltype(&::curl_easy_strerror) easy_strerror = nullptr;
  decltype(&::curl_multi_init) multi_init = nullptr;
  decltype(&::curl_multi_cleanup) multi_cleanup = nullptr;
  decltype(&::curl_multi_setopt) multi_setopt = nullptr;
  decltype(&::curl_multi_add_handle) multi_add_handle = nullptr;
  decltype(&::curl_multi_remove_handle) multi_remove_handle = nullptr;
  decltype(&::curl_multi_assign) multi_assign = nullptr;
  decltype(&::curl_multi_socket_action) multi_socket_action = nullptr;
  decltype(&::curl_multi_info_read) multi_info_read = nullptr;
  decltype(&::curl_multi_strerror) multi_strerror = nullptr;
  decltype(&::curl_slist_append) slist_append = nullptr;
  decltype(&::curl_slist_free_all) slist_free_all = nullptr;
  decltype(&::curl_url) url = nullptr;
  decltype(&::curl_url_cleanup) url_cleanup = nullptr;
  decltype(&::curl_url_set) url_set = nullptr;
  decltype(&::curl_url_get) url_get = nullptr;
  decltype(&::curl_url_strerror) url_strerror = nullptr;
};

template <class F>
bool bind(void* lib, const char* name, F& f, std::string& error) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  if (!f && error.empty()) error = std::string(kLibrary) + ": no symbol " + name;
  return f != nullptr;
}

Api load() {
  Api a;
  void* lib = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* e = dlerror();
    a.error = std::string("cannot load ") + kLibrary + " (" + (e ? e : "unknown error") + ")";
    return a;
  }
  std::string& e = a.error;
  // Every symbol is looked up (the first one missing names the error).
  bind(lib, "curl_global_init", a.global_init, e);
  bind(lib, "curl_free", a.free, e);
  bind(lib, "curl_easy_init", a.easy_init, e);
  bind(lib, "curl_easy_cleanup", a.easy_cleanup, e);
  bind(lib, "curl_easy_setopt", a.easy_setopt, e);
  bind(lib, "curl_easy_getinfo", a.easy_getinfo, e);
  bind(lib, "curl_easy_strerror", a.easy_strerror, e);
  bind(lib, "curl_multi_init", a.multi_init, e);
  bind(lib, "curl_multi_cleanup", a.multi_cleanup, e);
  bind(lib, "curl_multi_setopt", a.multi_setopt, e);
  bind(lib, "curl_multi_add_handle", a.multi_add_handle, e);
  bind(lib, "curl_multi_remove_handle", a.multi_remove_handle, e);
  bind(lib, "curl_multi_assign", a.multi_assign, e);
  bind(lib, "curl_multi_socket_action", a.multi_socket_action, e);
  bind(lib, "curl_multi_info_read", a.multi_info_read, e);
  bind(lib, "curl_multi_strerror", a.multi_strerror, e);
  bind(lib, "curl_slist_append", a.slist_append, e);
  bind(lib, "curl_slist_free_all", a.slist_free_all, e);
  bind(lib, "curl_url", a.url, e);
  bind(lib, "curl_url_cleanup", a.url_cleanup, e);
  bind(lib, "curl_url_set", a.url_set, e);
  bind(lib, "curl_url_get", a.url_get, e);
  bind(lib, "curl_url_strerror", a.url_strerror, e);
  a.loaded = e.empty();  // the library stays loaded for the life of the process
  return a;
}

const Api& api() {
  static const Api a = load();  // thread-safe, once
  return a;
}

// The type of the one argument after a CURLoption / CURLMoption, from its number (curl.h:
// CURLOPTTYPE_LONG 0, OBJECTPOINT 10000, FUNCTIONPOINT 20000, OFF_T 30000, BLOB 40000).
enum class ArgType { Long, Pointer, Function, OffT };
ArgType argType(int option) {
  switch (option / 10000) {
    case 0:
      return ArgType::Long;
    case 2:
      return ArgType::Function;
    case 3:
      return ArgType::OffT;
    default:
      return ArgType::Pointer;  // object, string, slist, callback data, blob
  }
}

using AnyFunction = void (*)();

// Passes the one argument after `option` on to libcurl's own setopt, with its type.
template <class Handle, class Option, class Setopt>
auto forwardSetopt(Setopt setopt, Handle* handle, Option option, va_list ap) {
  switch (argType(int(option))) {
    case ArgType::Long:
      return setopt(handle, option, va_arg(ap, long));
    case ArgType::Function:
      return setopt(handle, option, va_arg(ap, AnyFunction));
    case ArgType::OffT:
      return setopt(handle, option, va_arg(ap, curl_off_t));
    default:
      return setopt(handle, option, va_arg(ap, void*));
  }
}

}  // namespace

namespace netsvr {

const char* curlLoadError() {
  const Api& a = api();
  return a.loaded ? nullptr : a.error.c_str();
}

}  // namespace netsvr

extern "C" {

CURLcode curl_global_init(long flags) {
  return api().loaded ? api().global_init(flags) : CURLE_FAILED_INIT;
}

void curl_free(void* p) {
  if (p && api().loaded) api().free(p);
}

CURL* curl_easy_init(void) {
  return api().loaded ? api().easy_init() : nullptr;
}

void curl_easy_cleanup(CURL* easy) {
  if (api().loaded) api().easy_cleanup(easy);
}

// curl.h declares the setopt functions with an enum before the `...`; libcurl's own definitions
// call va_start on it just the same (the enum's promoted type is int, same representation).
#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wvarargs"
#endif

CURLcode curl_easy_setopt(CURL* easy, CURLoption option, ...) {
  if (!api().loaded) return CURLE_FAILED_INIT;
  va_list ap;
  va_start(ap, option);
  CURLcode rc = forwardSetopt(api().easy_setopt, easy, option, ap);
  va_end(ap);
  return rc;
}

CURLcode curl_easy_getinfo(CURL* easy, CURLINFO info, ...) {
  if (!api().loaded) return CURLE_FAILED_INIT;
  va_list ap;
  va_start(ap, info);
  void* out = va_arg(ap, void*);  // every CURLINFO takes one pointer to where the answer goes
  va_end(ap);
  return api().easy_getinfo(easy, info, out);
}

const char* curl_easy_strerror(CURLcode code) {
  return api().loaded ? api().easy_strerror(code) : api().error.c_str();
}

CURLM* curl_multi_init(void) {
  return api().loaded ? api().multi_init() : nullptr;
}

CURLMcode curl_multi_cleanup(CURLM* multi) {
  return api().loaded ? api().multi_cleanup(multi) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_setopt(CURLM* multi, CURLMoption option, ...) {
  if (!api().loaded) return CURLM_INTERNAL_ERROR;
  va_list ap;
  va_start(ap, option);
  CURLMcode rc = forwardSetopt(api().multi_setopt, multi, option, ap);
  va_end(ap);
  return rc;
}

#if defined(__clang__)
#pragma clang diagnostic pop
#endif

CURLMcode curl_multi_add_handle(CURLM* multi, CURL* easy) {
  return api().loaded ? api().multi_add_handle(multi, easy) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_remove_handle(CURLM* multi, CURL* easy) {
  return api().loaded ? api().multi_remove_handle(multi, easy) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_assign(CURLM* multi, curl_socket_t fd, void* p) {
  return api().loaded ? api().multi_assign(multi, fd, p) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_socket_action(CURLM* multi, curl_socket_t fd, int mask, int* running) {
  return api().loaded ? api().multi_socket_action(multi, fd, mask, running) : CURLM_INTERNAL_ERROR;
}

CURLMsg* curl_multi_info_read(CURLM* multi, int* left) {
  if (api().loaded) return api().multi_info_read(multi, left);
  if (left) *left = 0;
  return nullptr;
}

const char* curl_multi_strerror(CURLMcode code) {
  return api().loaded ? api().multi_strerror(code) : api().error.c_str();
}

curl_slist* curl_slist_append(curl_slist* list, const char* line) {
  return api().loaded ? api().slist_append(list, line) : nullptr;
}

void curl_slist_free_all(curl_slist* list) {
  if (list && api().loaded) api().slist_free_all(list);
}

CURLU* curl_url(void) {
  return api().loaded ? api().url() : nullptr;
}

void curl_url_cleanup(CURLU* u) {
  if (u && api().loaded) api().url_cleanup(u);
}

CURLUcode curl_url_set(CURLU* u, CURLUPart part, const char* content, unsigned int flags) {
  return api().loaded ? api().url_set(u, part, content, flags) : CURLUE_OUT_OF_MEMORY;
}

CURLUcode curl_url_get(CURLU* u, CURLUPart part, char** out, unsigned int flags) {
  if (out) *out = nullptr;
  return api().loaded ? api().url_get(u, part, out, flags) : CURLUE_OUT_OF_MEMORY;
}

const char* curl_url_strerror(CURLUcode code) {
  return api().loaded ? api().url_strerror(code) : api().error.c_str();
}

}  // extern "C"
