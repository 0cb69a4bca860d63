from av_td3.envs.routes import write_all

for path in write_all():
    print(path)
