#include "master/check.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include "master/listeners.hpp"

namespace netsvr {
namespace {

std::string keyValue(const std::string& key, const std::string& value) {
  return key + " = \"" + value + "\": ";
}

// The oldest OpenSSL error of this thread as text (the queue is cleared).
std::string sslError() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

// Opening the file first gives "Permission denied" instead of OpenSSL's "system lib" wording.
void checkReadable(const std::string& key, const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ConfigError(keyValue(key, path) + "cannot read: " + strerror(errno));
  ::close(fd);
}

// A passphrase is never asked for: the workers could not answer either.
int noPassphrase(char*, int, int, void*) {
  return 0;
}

// The pair the workers give libwebsockets (OpenSSL). The key is read on its own first, so that a
// file that holds no key is told from the key of another certificate.
void checkTls(const CustomerConfig& customer) {
  if (customer.tlsCertFile.empty()) return;
  checkReadable("Customer.TLSCertFile", customer.tlsCertFile);
  checkReadable("Customer.TLSKeyFile", customer.tlsKeyFile);
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(customer.tlsKeyFile.c_str(), "r"),
                                                BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, noPassphrase, nullptr) : nullptr,
      EVP_PKEY_free);
  if (!key)
    throw ConfigError(keyValue("Customer.TLSKeyFile", customer.tlsKeyFile) +
                      "not an unencrypted PEM private key: " + sslError());
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_server_method()),
                                                        SSL_CTX_free);
  if (!ctx) throw ConfigError("Customer.TLSCertFile: OpenSSL: " + sslError());
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), customer.tlsCertFile.c_str()) != 1)
    throw ConfigError(keyValue("Customer.TLSCertFile", customer.tlsCertFile) +
                      "not a PEM certificate: " + sslError());
  if (SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1 ||
      SSL_CTX_check_private_key(ctx.get()) != 1)
    throw ConfigError(keyValue("Customer.TLSKeyFile", customer.tlsKeyFile) +
                      "does not match the certificate in Customer.TLSCertFile: " + sslError());
}

// libcurl is what posts to the callbacks, so libcurl's URL parser decides.
void checkCallbackUrl(const std::string& key, const std::string& url) {
  if (url.empty()) return;
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), curl_url_cleanup);
  CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0);
  if (rc != CURLUE_OK)
    throw ConfigError(keyValue(key, url) + "not a URL (" + curl_url_strerror(rc) + ")");
  char* scheme = nullptr;
  curl_url_get(u.get(), CURLUPART_SCHEME, &scheme, 0);
  std::string s = scheme ? scheme : "";
  curl_free(scheme);
  if (s != "http" && s != "https")
    throw ConfigError(keyValue(key, url) + "must be an http:// or https:// URL");
}

// Only a note: the service manager may create it at start (RuntimeDirectory=, LogsDirectory=).
void noteMissingDirectory(const std::string& key, const std::string& file,
                          std::vector<std::string>* notes) {
  auto dir = std::filesystem::path(file).parent_path();
  std::error_code ec;
  if (notes && !std::filesystem::is_directory(dir, ec))
    notes->push_back(keyValue(key, file) + "directory " + dir.string() +
                     " does not exist (yet): start fails unless it is created first");
}

}  // namespace

Config checkConfig(const std::string& path, std::vector<std::string>* notes) {
  Config config = loadConfig(path);
  const std::string prefix = config.path + ": ";
  normaliseAddresses(config);
  try {
    resolveListenAddress("Customer.ListenAddress", config.customer.listenAddress);
    if (!config.metricsListenAddress.empty())
      resolveListenAddress("Metrics.ListenAddress", config.metricsListenAddress);
    checkTls(config.customer);
    checkCallbackUrl("Customer.OnOpenCallbackApi", config.customer.onOpenCallbackApi);
    checkCallbackUrl("Customer.OnCloseCallbackApi", config.customer.onCloseCallbackApi);
    noteMissingDirectory("PidFile", config.pidFile, notes);
    if (!config.logFile.empty()) noteMissingDirectory("LogFile", config.logFile, notes);
  } catch (const ConfigError& e) {
    throw ConfigError(prefix + e.what());
  }
  if (notes) {
    for (auto& note : *notes) note = prefix + note;
    for (const auto& key : config.ignoredKeys)
      notes->push_back(prefix + "key " + key + " is not used (ignored)");
  }
  return config;
}

}  // namespace netsvr
