# `make deb`: netsvr_<version>_amd64.deb with CPack. The binary (stripped), /etc/netsvr/netsvr.toml
# as a conffile, the systemd unit, a system user created by postinst, and Depends computed by
# dpkg-shlibdeps from the libraries the binary links.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME netsvr)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "netsvr-cpp developers <netsvr@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "WebSocket gateway between clients and business processes (netsvr protocol v6)")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "Wire-compatible with the Go netsvr, so its Go and PHP business SDKs work unchanged.")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # netsvr_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# useradd in postinst; the libuv event loop of lws, a plugin it loads, and libcurl, which
# worker/curl_dl.cpp loads for the HTTP callbacks (dpkg-shlibdeps sees neither)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd, libwebsockets-evlib-uv, libcurl4 (>= ${CURL_VERSION_STRING})")
set(CPACK_STRIP_FILES ON)
# Install with the prefix /usr under DESTDIR, so that install_config.cmake sees /usr and puts
# the config in /etc/netsvr.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)  # the prefix with CPACK_SET_DESTDIR, whatever the build's is
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/packaging/deb/conffiles ${CMAKE_SOURCE_DIR}/packaging/deb/postinst
    ${CMAKE_SOURCE_DIR}/packaging/deb/prerm ${CMAKE_SOURCE_DIR}/packaging/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
