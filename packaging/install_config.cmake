# Run by `cmake --install` and cpack (packaging/install.cmake): installs the example config and
# the systemd unit with the paths of this prefix. NETSVR_SOURCE_DIR and NETSVR_STAGE_DIR are set
# by the caller.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(etc_dir "/etc/netsvr")
else()
  set(etc_dir "${CMAKE_INSTALL_PREFIX}/etc/netsvr")
endif()

# The service keeps its pid file in its RuntimeDirectory: /etc is read-only to it.
file(READ "${NETSVR_SOURCE_DIR}/etc/netsvr.toml" config)
string(REPLACE "PidFile = \"netsvr.pid\"" "PidFile = \"/run/netsvr/netsvr.pid\"" installed
               "${config}")
if(installed STREQUAL config)
  message(FATAL_ERROR "etc/netsvr.toml has no line PidFile = \"netsvr.pid\" to rewrite")
endif()
file(WRITE "${NETSVR_STAGE_DIR}/netsvr.toml" "${installed}")

file(READ "${NETSVR_SOURCE_DIR}/etc/netsvr.service" unit)
string(REPLACE "/usr/bin/netsvr" "${CMAKE_INSTALL_PREFIX}/bin/netsvr" unit "${unit}")
string(REPLACE "/etc/netsvr/" "${etc_dir}/" unit "${unit}")
string(REPLACE "/usr/share/doc/netsvr" "${CMAKE_INSTALL_PREFIX}/share/doc/netsvr" unit "${unit}")
file(WRITE "${NETSVR_STAGE_DIR}/netsvr.service" "${unit}")

file(INSTALL "${NETSVR_STAGE_DIR}/netsvr.toml" DESTINATION "${etc_dir}"
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(INSTALL "${NETSVR_STAGE_DIR}/netsvr.service"
     DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system"
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
